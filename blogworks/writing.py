"""Writing: the admin's pieces that a real blog's size needs (thousands of tags, 100,000 posts).

- `ranked_tags`: the tag autocomplete's order: the exact name first, then names that start with what
  was typed, most used first, then names that merely contain it (descriptions are not searched).
- `TagsField` and `TagsAutocomplete`: the tags box, where a user who may add tags can also type a new
  one (select2 sends it as "new:NAME"); new tags come back unsaved and are saved with the post.
- `TagSearchFilter`: filter a list by a tag typed into a box, instead of a link for every tag.
- `PostForm`: the post form, with a plain "More tags" box for names (works without JavaScript).
- `StatusFilter`: published, scheduled (dated in the future) or draft; `YearFilter`: one year.
- `PostAdmin`: what every kind's admin shares: lists that stay fast, the tags box, the Markdown
  preview, the status column, secret preview links; `truncated`: a long cell cut, whole in its tooltip.

Models come in as arguments (or through the querysets given): this module never imports linkblog.
"""

import re

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, Count, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from .permissions import permission_name

NEW_TAG_PREFIX = "new:"


def ranked_tags(tags, term, link_models):
    """`tags` whose name contains `term`, best first: exact, then prefix by use, then the rest by use.
    Use counts every post's link (drafts too: it is the author's own ranking), read from the links'
    (tag, post) indexes alone."""
    term = term.strip().lower()
    uses = sum(
        Coalesce(Subquery(links.objects.filter(tag=OuterRef("pk")).values("tag").annotate(n=Count("*")).values("n")), 0)
        for links in link_models
    )
    match = Case(When(tag=term, then=Value(0)), When(tag__startswith=term, then=Value(1)), default=Value(2))
    return tags.filter(tag__contains=term).annotate(match=match, uses=uses).order_by("match", "-uses", "tag")


def split_new_tags(values):
    """(ids, names): the chosen tags' ids, and the names typed as new tags. Values are form data, or
    tags already cleaned (an unsaved one counts by its name)."""
    ids, names = [], []
    for value in values or ():
        if hasattr(value, "tag"):
            value = str(value.pk) if value.pk else NEW_TAG_PREFIX + value.tag
        value = str(value)
        if value.startswith(NEW_TAG_PREFIX):
            names.append(value[len(NEW_TAG_PREFIX):])
        else:
            ids.append(value)
    return ids, names


def is_tag_id(value):
    """Whether a submitted value can be a tag's id: a number the database can hold (a bigger one
    makes SQLite raise instead of finding nothing)."""
    return value.isdigit() and int(value) < 2**63


class TagsAutocomplete(AutocompleteSelectMultiple):
    """The admin's tag autocomplete, which also shows new tags typed by name (after a form error)."""

    def optgroups(self, name, value, attrs=None):
        ids, names = split_new_tags(value)
        # Django looks every value up as a tag id: one that is no id (the form refused it) would be a 500.
        groups = super().optgroups(name, [pk for pk in ids if is_tag_id(pk)], attrs)
        options = groups[0][1]
        for new_name in names:
            value = NEW_TAG_PREFIX + new_name
            options.append(self.create_option(name, value, new_name, True, len(options)))
        return groups

    @property
    def media(self):
        # In one list with Django's scripts, so it comes after select2 (set up before the page's
        # ready handler starts the box); a separate Media added on could be ordered anywhere.
        media = super().media
        return forms.Media(js=[*media._js, "linkblog-tags.js"], css=media._css)


class TagsField(forms.ModelMultipleChoiceField):
    """Tags chosen by id, and new ones typed by name for users who `may_create` them. New tags are
    returned unsaved (a form with errors creates nothing); `clean_name` is the model's name rule."""

    def __init__(self, queryset, *, may_create, clean_name, **kwargs):
        super().__init__(queryset, **kwargs)
        self.may_create, self.clean_name = may_create, clean_name
        if may_create:
            self.widget.attrs["data-tags"] = "true"  # select2 offers what is typed as a new tag

    def clean(self, value):
        ids, names = split_new_tags(value)
        for pk in ids:
            if not is_tag_id(pk):
                raise ValidationError(self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": pk})
        chosen = list(super().clean(ids)) if ids else []
        for name in names:
            name = self.clean_name(name)
            if any(tag.tag == name for tag in chosen):
                continue
            tag = self.queryset.filter(tag=name).first()
            if tag is None and not self.may_create:
                raise ValidationError(f"There is no tag “{name}”, and your account may not create tags.")
            chosen.append(tag or self.queryset.model(tag=name))
        return chosen


class PostForm(forms.ModelForm):
    """The post form, with a plain box for tag names beside the autocomplete: it works without
    JavaScript (where the autocomplete cannot add anything) and takes a pasted list."""

    add_tags = forms.CharField(required=False, max_length=2000, label="More tags",
                               help_text="Tag names separated by spaces or commas.")

    def clean(self):
        cleaned = super().clean()
        names = [name for name in re.split(r"[\s,]+", cleaned.get("add_tags", "")) if name]
        if names and "tags" in cleaned:
            try:
                cleaned["tags"] = self.fields["tags"].clean([*cleaned["tags"], *(NEW_TAG_PREFIX + name for name in names)])
            except ValidationError as error:
                self.add_error("add_tags", error)
        return cleaned


class TagSearchFilter(admin.ListFilter):
    """Filter by one tag typed into a box: a blog has thousands, too many to list as links."""

    title = "tag"
    parameter_name = "tag"
    template = "admin/linkblog/tag_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        values = params.pop(self.parameter_name, None)
        self.value = (values[-1] if isinstance(values, list) else values or "").strip().lower()
        if self.value:
            self.used_parameters = {self.parameter_name: self.value}
        self.other_parameters = [(key, item) for key, items in request.GET.lists()
                                 if key not in (self.parameter_name, "p") for item in items]

    def has_output(self):
        return True

    def expected_parameters(self):
        return [self.parameter_name]

    def queryset(self, request, queryset):
        return queryset.filter(tags__tag=self.value) if self.value else queryset

    def choices(self, changelist):
        yield {"value": self.value, "hidden": self.other_parameters,
               "clear_url": changelist.get_query_string(remove=[self.parameter_name, "p"])}


class StatusFilter(admin.SimpleListFilter):
    """Published, scheduled (not a draft, dated in the future) or draft: the queryset says which is which."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("published", "Published"), ("scheduled", "Scheduled"), ("draft", "Draft")]

    def queryset(self, request, queryset):
        chosen = {"published": queryset.published, "scheduled": queryset.scheduled,
                  "draft": lambda: queryset.filter(is_draft=True)}.get(self.value())
        return chosen() if chosen else queryset


class YearFilter(admin.SimpleListFilter):
    """Posts of one year, newest year first. The years come from the first and the last post (two
    index lookups): the admin's date hierarchy asked SQLite for every post's year, 0.9 s at 75,000."""

    title = "year"
    parameter_name = "year"

    def lookups(self, request, model_admin):
        dates = model_admin.model.objects.order_by("created").values_list("created", flat=True)
        first, last = dates.first(), dates.last()
        if first is None:
            return []
        return [(str(year), str(year)) for year in range(last.year, first.year - 1, -1)]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit() and 1 <= int(value) <= 9999:
            return queryset.filter(created__year=int(value))
        return queryset


def truncated(value, length=60):
    """A long cell (a URL, a quotation) cut to `length` characters, whole in its tooltip."""
    value = str(value)
    if len(value) <= length:
        return value
    return format_html('<span title="{}">{}…</span>', value, value[: length - 1])


class PostAdmin(admin.ModelAdmin):
    """What every kind's admin shares: lists that stay fast at 100,000 posts, the tags box, the
    Markdown preview, the status (draft, scheduled, published) and secret preview links. A subclass
    names the tag model (`tag_model`) and the site's search (`search(term, {kind: queryset})`)."""

    tag_model = None

    form = PostForm
    list_filter = [StatusFilter, YearFilter, "created", TagSearchFilter]
    autocomplete_fields = ["tags"]
    list_per_page = 50
    show_full_result_count = False  # one COUNT(*) fewer on every list page
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = ["preview_link"]
    actions = ["share_preview", "revoke_preview"]
    formfield_overrides = {
        # Not the admin's "Currently: <link> Change:" widget, which made the bookmarklet's add form look like an edit.
        models.URLField: {"widget": forms.URLInput(attrs={"class": "vURLField"})},
    }

    class Media:
        js = ["linkblog-admin.js"]
        css = {"all": ["linkblog-admin.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="Tags")
    def tag_list(self, post):
        return ", ".join(tag.tag for tag in post.tags.all())

    @admin.display(description="Status", ordering="is_draft")
    def status(self, post):
        return "Draft" if post.is_draft else "Scheduled" if post.is_scheduled else "Published"

    @admin.display(description="Secret preview link")
    def preview_link(self, post):
        if not post.preview_token:
            return "None. The list's “Share a secret preview link” action makes one."
        url = settings.LINKBLOG_BASE_URL + reverse("draft_preview", args=[post.preview_token])
        return format_html('<a href="{}" rel="noopener">{}</a>', url, url)

    @admin.action(description="Share a secret preview link", permissions=["change"])
    def share_preview(self, request, queryset):
        for post in queryset:
            post.share_preview()
        self.message_user(request, f"Made {len(queryset)} preview link(s): each post's page shows its link.")

    @admin.action(description="Revoke the secret preview link", permissions=["change"])
    def revoke_preview(self, request, queryset):
        for post in queryset:
            post.revoke_preview()
        self.message_user(request, f"Revoked the preview links of {len(queryset)} post(s).")

    def search(self, term, querysets):
        """The site's search of {kind: queryset}: a blogworks.search.Search."""
        raise NotImplementedError

    def get_search_results(self, request, queryset, search_term):
        """The site's search (its index and query language: words, "phrases", tag:, year:), drafts
        included, plus the model's own `search_fields` (a blogmark's URL): no join, no DISTINCT."""
        if not search_term.strip():
            return queryset, False
        by_index = self.search(search_term, {self.model.kind: queryset}).matching.get(self.model.kind, queryset.none())
        if not self.wants_field_search(search_term):
            return by_index, False
        by_field, _ = super().get_search_results(request, queryset, search_term)
        return by_index | by_field, False

    def wants_field_search(self, search_term):
        """Whether `search_fields` could hold what the index does not (their search reads every row)."""
        return True

    def get_changeform_initial_data(self, request):
        """What a link (the bookmarklet's, say) fills in, less a `created` that is no date and time:
        Django hands the text to the date widget, which cannot split it (a 500)."""
        initial = super().get_changeform_initial_data(request)
        if "created" in initial:
            try:
                created = parse_datetime(initial.pop("created"))
            except ValueError:  # the shape of one, but no such day or time
                created = None
            if created is not None:
                initial["created"] = created
        return initial

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if obj else [name for name in fields if name != "preview_link"]  # a new post has no link yet

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == self.model.markdown_field:
            field.widget.attrs["data-markdown-preview"] = reverse("admin_markdown_preview")
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name != "tags":
            return super().formfield_for_manytomany(db_field, request, **kwargs)
        widget = TagsAutocomplete(db_field, self.admin_site, using=kwargs.get("using"))
        tags = self.tag_model
        return TagsField(tags.objects.all(), widget=widget, required=False, label="Tags", clean_name=tags.clean_name,
                         may_create=request.user.has_perm(permission_name("add", tags)),
                         help_text="Type to find a tag; a name that is not one yet is created when you save.")

    def save_related(self, request, form, formsets, change):
        """New tags typed in the tags box are created now, with the post."""
        form.cleaned_data["tags"] = [tag if tag.pk else self.tag_model.objects.get_or_create(tag=tag.tag)[0]
                                     for tag in form.cleaned_data["tags"]]
        super().save_related(request, form, formsets, change)
