"""The admin's own pages (import, export, the bookmarklet): their forms, their look, and who may use
which tool: the Django permissions of what a tool touches, never merely being staff.

linkblog.py declares the pages and what each tool needs ([(action, model)]); this module never
imports linkblog.
"""

from django import forms
from django.contrib import admin
from django.shortcuts import render

from .permissions import missing_permissions


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(
        choices=[("", "Detect from the content"), ("ndjson", "linkblog NDJSON"), ("netscape", "Browser bookmarks (HTML)"),
                 ("pinboard", "Pinboard JSON"), ("feed", "Atom or RSS feed")],
        required=False,
    )
    folders_as_tags = forms.BooleanField(required=False, label="Bookmark folders become tags")
    skip_bad = forms.BooleanField(required=False, label="Skip bad records and import the rest")
    dry_run = forms.BooleanField(required=False, label="Dry run: check and count, write nothing")


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[("ndjson", "linkblog NDJSON (everything)"), ("netscape", "Browser bookmarks (blogmarks)")])
    drafts = forms.BooleanField(required=False, initial=True, label="Include drafts")


def tools_for(user, tool_needs):
    """{"import": bool, "export": bool, ...}: which of the tools (`tool_needs`: {tool: [(action, model)]})
    `user` may use."""
    return {tool: not missing_permissions(user, needs) for tool, needs in tool_needs.items()}


def import_needs(report, post_models, always):
    """What committing an import needs: `always`, and add and change of every kind of post in the file."""
    kinds = [kind for kind, _ in report.rows() if kind in post_models]
    return always + [(action, post_models[kind]) for kind in kinds for action in ("add", "change")]


def admin_page(request, template, status=200, **context):
    context = {**admin.site.each_context(request), **context}
    return render(request, template, context, status=status)


def permission_refused(request, missing):
    """The 403 page that names the permissions a tool needs and the user lacks."""
    return admin_page(request, "admin/linkblog/permission_needed.html", 403, title="Permission needed", missing=missing)
