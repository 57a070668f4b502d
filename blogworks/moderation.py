"""Moderation: replies and mentions from other sites wait in the admin until the author approves
them (then they show under the post) or rejects them.

`ModerationAdmin` is the admin both share; `Moderated` the lookups both models share (linkblog.py's
Reply and Mention, on its abstract Response, with `post_kind`, `post_id`, `status`, APPROVED and
REJECTED, and `content_html`); `any_shown_under` asks of both at once. This module never imports
linkblog.
"""

from django.contrib import admin
from django.db import connections
from django.utils.html import format_html

from . import text
from .signals import posts_changed


class Moderated:
    """A reply's or mention's lookups: those of a post, those shown under it, and its post."""

    @classmethod
    def of_post(cls, post):
        return cls.objects.filter(post_kind=post.kind, post_id=post.pk)

    @classmethod
    def shown_under(cls, post):
        return cls.of_post(post).filter(status=cls.APPROVED)

    def post(self):
        """Its post, of any kind (found by kind: each kind's model is named after it), or None."""
        model = self._meta.apps.get_model(self._meta.app_label, self.post_kind)
        return model.objects.filter(pk=self.post_id).first()


def any_shown_under(models, post):
    """Whether any of `models` (Reply, Mention) shows something under `post`: one query of EXISTS for
    all. Most posts have none, and a permalink asks on every view: the ORM's two queries took it
    about a tenth of its time. (SQL of our own: the ORM cannot OR two EXISTS into one SELECT.)"""
    connection = connections[models[0].objects.db]
    quote = connection.ops.quote_name
    exists = [f"EXISTS (SELECT 1 FROM {quote(model._meta.db_table)} WHERE {quote('post_kind')} = %s"
              f" AND {quote('post_id')} = %s AND {quote('status')} = %s)" for model in models]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {' OR '.join(exists)}", [value for model in models for value in (post.kind, post.pk, model.APPROVED)])
        return bool(cursor.fetchone()[0])


class ModerationAdmin(admin.ModelAdmin):
    """Replies and mentions wait here until the author approves (shown under the post) or rejects them."""

    list_display = ["author_name", "excerpt", "post_link", "status", "received"]
    list_filter = ["status"]
    search_fields = ["author_name", "author_url", "url", "content_html"]
    actions = ["approve", "reject"]

    def has_add_permission(self, request):
        return False  # they come from other sites

    def has_change_permission(self, request, obj=None):
        # Nothing to edit by hand (the actions change the status), but the actions need the permission.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="What they said")
    def excerpt(self, response):
        return text.description(response.content_html) or response.url

    @admin.display(description="Post")
    def post_link(self, response):
        post = response.post()
        return format_html('<a href="{}">{}</a>', post.get_absolute_url(), post) if post else "(deleted)"

    def set_status(self, request, queryset, status):
        count = queryset.update(status=status)
        posts_changed.send(sender=queryset.model)  # bulk updates send no model signals: refresh cached pages
        self.message_user(request, f"{count} {queryset.model._meta.verbose_name_plural} {status}.")

    @admin.action(description="Approve: show under the post", permissions=["change"])
    def approve(self, request, queryset):
        self.set_status(request, queryset, self.model.APPROVED)

    @admin.action(description="Reject: never show", permissions=["change"])
    def reject(self, request, queryset):
        self.set_status(request, queryset, self.model.REJECTED)
