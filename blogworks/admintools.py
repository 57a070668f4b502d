"""The admin's own pages (import, export, the bookmarklet): their forms, their look, and who may use
which tool: the Django permissions of what a tool touches, never merely being staff.

linkblog.py declares the pages and what each tool needs ([(action, model)]); this module never
imports linkblog.
"""

from django import forms
from django.contrib import admin
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from .formats import ImportFailed
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
    drafts = forms.BooleanField(required=False, initial=True, label="Include drafts and scheduled posts")


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


def run_import(form, import_posts):
    """(report, error, status) of importing a posted ImportForm's file with `import_posts(stream,
    format, **options)` (an ImportReport): nothing for an unposted form, a 400 for a bad one or a
    failed import. A PermissionDenied (the import refused and rolled back) passes through."""
    if not form.is_bound:
        return None, None, 200
    if not form.is_valid():
        return None, None, 400
    options = form.cleaned_data
    try:
        report = import_posts(options["file"].file, options["format"] or None, skip_bad=options["skip_bad"],
                              dry_run=options["dry_run"], folders_as_tags=options["folders_as_tags"])
    except ImportFailed as failure:
        return None, str(failure), 400
    return report, None, 400 if report.failed else 200


def export_download(chunks, format):
    """An export's chunks as a file to save, named after today."""
    extension, content_type = {"ndjson": ("ndjson", "application/x-ndjson"), "netscape": ("html", "text/html")}[format]
    response = StreamingHttpResponse(chunks, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="linkblog-{timezone.now():%Y-%m-%d}.{extension}"'
    return response
