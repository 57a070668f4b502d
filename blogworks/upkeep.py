"""Upkeep: what a write sets going besides its own row. Every visible write announces itself (the
page cache listens); a post's save or delete keeps its listing rows, link rows and stored card in
step, has its links archived once readers can see it and tells the fediverse in the background;
migrations pause the search index on SQLite (search_index.py says why).

These are signal handlers, not declarations: linkblog.py hands its models in (`connect()`), since
this package never imports linkblog. It needs the TASKS setting (federation's and the archive's
background tasks), so linkblog.py imports it in its `with defer:` block.
"""

from functools import partial

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_migrate
from django.utils import timezone

from . import cards, federation, linkstore
from .jobs import enqueue_on_commit
from .linktasks import archive_post_links
from .search_index import pause_search_index, resume_search_index
from .signals import posts_changed


def announce_change(sender, **kwargs):
    posts_changed.send(sender=sender)


class Upkeep:
    """The handlers, holding the models they keep in step (`store_listing`: ({kind: pks}) -> None)."""

    def __init__(self, post_models, link_model, post_link_model, response_models, listed_tag_model, store_listing):
        self.post_models, self.link_model, self.post_link_model = post_models, link_model, post_link_model
        self.response_models, self.listed_tag_model, self.store_listing = response_models, listed_tag_model, store_listing

    def post_saved(self, sender, instance, raw=False, **kwargs):
        """Keep the post's link rows in step, have its links archived once readers can see it, and tell
        the fediverse in the background."""
        if raw:  # loaddata restores rows as they were dumped: nothing new to tell anyone
            return
        links = instance.links()
        linkstore.set_post_links(self.link_model, self.post_link_model, {(instance.kind, instance.pk): links})
        if settings.LINKBLOG_ARCHIVE_LINKS and not instance.is_draft and links:
            archive_links_when_published(instance)
        federation.post_changed(instance)

    def post_deleted(self, sender, instance, **kwargs):
        linkstore.set_post_links(self.link_model, self.post_link_model, {(instance.kind, instance.pk): []})
        federation.post_changed(instance, deleted=True)
        for response_model in self.response_models:
            response_model.of_post(instance).delete()

    def post_listed(self, sender, instance, **kwargs):
        """After a post's save (loaddata's raw ones too) or delete: its listing rows follow."""
        self.store_listing({instance.kind: [instance.pk]})

    def post_tags_listed(self, sender, instance, action, reverse, model, pk_set, **kwargs):
        """After a post's tags change, from the post (post.tags.add) or from the tag (tag.entry_set.add)."""
        if action not in ("post_add", "post_remove", "post_clear"):
            return
        if not reverse:
            self.store_listing({instance.kind: [instance.pk]})
        elif pk_set is not None:
            self.store_listing({model.kind: pk_set})
        else:  # the tag cleared from every post of a kind: its listing rows still name them
            tagged = self.listed_tag_model.objects.filter(tag=instance, kind=model.kind)
            self.store_listing({model.kind: tagged.values_list("post_id", flat=True)})


def archive_links_when_published(post):
    """A background task, after commit: the archive's slowness or failure never touches the save.
    A post dated later is archived when its date comes (the task runs no earlier)."""
    task = archive_post_links
    if post.created > timezone.now():
        task = task.using(run_after=post.created)
    enqueue_on_commit(task, post.kind, post.pk)


def connect(upkeep, tag_model, card_model, search_index, announced=(), covered=()):
    """Connect `upkeep`'s handlers, the cards' (`covered`: cards.connect_upkeep's) and the search
    index's pause around migrations; `announced`: models besides tags and posts whose writes show."""
    post_models = upkeep.post_models
    for model in [tag_model, *post_models.values(), *announced]:
        post_save.connect(announce_change, sender=model, dispatch_uid=f"changed-save-{model.__name__}")
        post_delete.connect(announce_change, sender=model, dispatch_uid=f"changed-delete-{model.__name__}")
    for model in post_models.values():
        name = model.__name__
        post_save.connect(upkeep.post_listed, sender=model, weak=False, dispatch_uid=f"listing-save-{name}")
        post_delete.connect(upkeep.post_listed, sender=model, weak=False, dispatch_uid=f"listing-delete-{name}")
        m2m_changed.connect(upkeep.post_tags_listed, sender=model.tags.through, weak=False, dispatch_uid=f"listing-tags-{name}")
        m2m_changed.connect(announce_change, sender=model.tags.through, dispatch_uid=f"changed-tags-{name}")
        post_save.connect(upkeep.post_saved, sender=model, weak=False, dispatch_uid=f"links-save-{name}")
        post_delete.connect(upkeep.post_deleted, sender=model, weak=False, dispatch_uid=f"links-delete-{name}")
    cards.connect_upkeep(card_model, post_models, tag_model, upkeep.post_link_model, covered=covered)
    pre_migrate.connect(partial(pause_search_index, search_index), dispatch_uid="pause-search-index", weak=False)
    post_migrate.connect(partial(resume_search_index, search_index), dispatch_uid="resume-search-index", weak=False)
