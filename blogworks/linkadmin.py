"""The admin's links page (README "Links that outlive the web"): the links that need the author, by
post and by host, each with its history, and the fixes: mark fine, or replace the URL (a new
address, a moved link's new home, or its archived copy) in every post holding it.

- `LinkAdmin`: the page; linkblog.py registers a subclass that names its models (`post_link_model`,
  `post_models`) and its history inline (a `HistoryInline` of the check model);
- `LinkStateFilter`, `LinkHostFilter`: what needs attention, and the hosts that took most links down;
- `posts_holding(links, post_link_model, post_models, user)`: the posts holding each link.

Models come in as arguments or class attributes: this module never imports linkblog.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import text
from .permissions import may_view, missing_permissions
from .signals import links_changed, posts_changed


class LinkStateFilter(admin.SimpleListFilter):
    """By state; until another is chosen, the links that need the author: dead, suspect or moved."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [*model_admin.model.STATES, ("all", "all")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset.exclude(state="alive")
        return queryset if self.value() == "all" else queryset.filter(state=self.value())

    def choices(self, changelist):
        yield {"selected": self.value() is None, "display": "needs attention",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for value, title in self.lookup_choices:
            yield {"selected": self.value() == value, "display": title,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}


class LinkHostFilter(admin.SimpleListFilter):
    """The hosts with the most links needing attention: a site that died takes many links with it."""

    title = "host"
    parameter_name = "host"

    def lookups(self, request, model_admin):
        hosts = (model_admin.model.objects.held().exclude(state="alive").values_list("host").annotate(count=Count("*"))
                 .order_by("-count", "host")[:30])
        return [(host, f"{host or '(no host)'} ({count})") for host, count in hosts]

    def queryset(self, request, queryset):
        return queryset if self.value() is None else queryset.filter(host=self.value())


class HistoryInline(admin.TabularInline):
    """A link's checks, newest first: read only. A subclass names the check model."""

    fields = ["checked_at", "outcome", "status", "final_url", "permanent_redirect", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def posts_holding(links, post_link_model, post_models, user=None):
    """Give each Link `held_by`, the posts holding it (those of the kinds `user` may view, when
    given: drafts' titles stay with those allowed to see them). One query for the rows, one per kind."""
    rows = post_link_model.objects.filter(link__in=links).order_by("kind", "post_id")
    if user is not None:
        rows = rows.filter(kind__in=[kind for kind, model in post_models.items() if may_view(user, model)])
    rows = list(rows)
    ids_by_kind = {}
    for row in rows:
        ids_by_kind.setdefault(row.kind, []).append(row.post_id)
    posts = {(kind, post.pk): post for kind, ids in ids_by_kind.items() for post in post_models[kind].objects.filter(pk__in=ids)}
    for link in links:
        link.held_by = [posts[row.kind, row.post_id] for row in rows if row.link_id == link.pk and (row.kind, row.post_id) in posts]
    return links


def admin_change_url(post):
    return reverse(f"admin:{post._meta.app_label}_{post._meta.model_name}_change", args=[post.pk])


class LinkChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        self.model_admin.with_posts(self.result_list, request.user)


class LinkForm(forms.ModelForm):  # the admin gives it its model
    replace_with = forms.URLField(
        required=False, max_length=1000, assume_scheme="https", label="Replace with",
        help_text="A new address for this link: it replaces the old one in every post that holds it.",
    )


class LinkAdmin(admin.ModelAdmin):
    """Links that need attention by post, their history, and the fixes: mark fine, replace the URL
    (a new address, the moved link's new home, or the archived copy) in the posts holding it."""

    post_link_model = None  # which post holds which link
    post_models = {}  # {kind: model}

    form = LinkForm
    list_display = ["short_url", "state", "host", "last_checked", "held_by", "new_address", "archived_copy"]
    list_filter = [LinkStateFilter, LinkHostFilter]
    search_fields = ["url", "host"]
    list_per_page = 50
    fields = ["url", "state", "held_by", "final_url", "archived_url", "last_checked", "fine_since", "replace_with"]
    readonly_fields = ["url", "state", "held_by", "final_url", "archived_url", "last_checked", "fine_since"]
    actions = ["mark_fine", "accept_new_address", "use_archived_copy"]

    def with_posts(self, links, user=None):
        return posts_holding(links, self.post_link_model, self.post_models, user)

    def get_queryset(self, request):
        return super().get_queryset(request).held()

    def get_object(self, request, object_id, from_field=None):
        link = super().get_object(request, object_id, from_field)
        return link and self.with_posts([link], request.user)[0]

    def get_changelist(self, request, **kwargs):
        return LinkChangeList

    def has_add_permission(self, request):
        return False  # links come from posts

    def has_delete_permission(self, request, obj=None):
        return False  # a link goes when no post holds it

    @admin.display(description="URL", ordering="url")
    def short_url(self, link):
        return str(link)

    @admin.display(description="In posts")
    def held_by(self, link):
        return format_html_join(", ", '<a href="{}">{}</a>', ((admin_change_url(post), post) for post in link.held_by))

    @admin.display(description="Moved to")
    def new_address(self, link):
        return link.final_url

    @admin.display(description="Archived copy")
    def archived_copy(self, link):
        if not text.is_safe_url(link.archived_url):  # an archive's answer is no reason to run a script
            return ""
        return format_html('<a href="{}">archived copy</a>', link.archived_url)

    def save_model(self, request, link, form, change):
        if form.cleaned_data.get("replace_with"):
            self.replace_in_posts(request, link, form.cleaned_data["replace_with"])

    def replace_in_posts(self, request, link, new_url):
        """Point every post holding `link` at `new_url`, by the posts' own rules, all or none; False
        (with a message) when the user may not change one of them or a post would break its rules."""
        posts = self.with_posts([link])[0].held_by
        missing = sorted(missing_permissions(request.user, {("change", type(post)) for post in posts}))
        if missing:
            self.message_user(request, f"Not replaced: your account lacks {', '.join(missing)} for {link}.", messages.ERROR)
            return False
        try:
            with transaction.atomic():
                for post in posts:
                    post.replace_link(link.url, new_url)
                    post.full_clean()
                    post.save()
        except ValidationError as error:
            self.message_user(request, f"Not replaced in “{post}”: {' '.join(error.messages)}", messages.ERROR)
            return False
        self.message_user(request, f"Replaced {link} with {new_url[:100]} in {len(posts)} post(s).")
        return True

    @admin.action(description="Mark fine: forget their failures so far", permissions=["change"])
    def mark_fine(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = self.model.objects.filter(pk__in=ids).update(state="alive", final_url="", fine_since=timezone.now())
        links_changed.send(sender=self.model, link_ids=ids)  # the cards of posts holding them change
        posts_changed.send(sender=self.model)
        self.message_user(request, f"Marked {count} link(s) fine: only failures from now on count.")

    @admin.action(description="Accept the new address of moved links (in their posts)", permissions=["change"])
    def accept_new_address(self, request, queryset):
        for link in queryset.filter(state="moved").exclude(final_url=""):
            self.replace_in_posts(request, link, link.final_url)

    @admin.action(description="Use the archived copy instead (in their posts)", permissions=["change"])
    def use_archived_copy(self, request, queryset):
        for link in queryset.exclude(archived_url=""):
            self.replace_in_posts(request, link, link.archived_url)
