"""Background tasks for links (issue 16): ask the web archive to keep a copy of a published post's links.

Enqueued after a published post is saved (linkblog.py), run by `python linkblog.py worker`, so the
archive's slowness (tens of seconds a page) or failure never delays or fails the save. Models are
looked up by name (this package never imports linkblog): the app is `linkblog`, a kind's model is
named after it, and a Link's posts are its `posts` rows.
"""

from django.apps import apps
from django.conf import settings
from django.utils import timezone
from django_tasks import task

from . import archive
from .jobs import retry_later
from .linkcheck import quote_url
from .signals import links_changed, posts_changed

APP = "linkblog"


def published_post(kind, post_id):
    """The post, if it still exists and readers may see it now (not a draft, not dated later)."""
    model = apps.get_model(APP, kind)
    return model.objects.filter(pk=post_id, is_draft=False, created__lte=timezone.now()).first()


def snapshot_of(url):
    """A snapshot URL of `url`: saved now, or (when the archive queued the capture or refused)
    the closest it already has; None when it has none yet."""
    base_url, user_agent = settings.LINKBLOG_ARCHIVE_URL, settings.LINKBLOG_LINKCHECK_USER_AGENT
    try:
        return archive.save(url, base_url, user_agent=user_agent)
    except archive.ArchiveError:
        pass
    try:
        return archive.lookup(url, base_url, user_agent=user_agent)
    except archive.ArchiveError:
        return None


def can_be_archived(url):
    try:
        quote_url(url)
    except ValueError:  # a URL no request can be made for: asking again would never help
        return False
    return True


@task()
def archive_post_links(kind, post_id, attempt=0):
    """Ask the archive (LINKBLOG_ARCHIVE_URL) to save each link of a published post that has no
    archived copy yet, and store the snapshot URLs; tried again later for the links it could not save."""
    if published_post(kind, post_id) is None:
        return  # deleted, made a draft or dated later since it was enqueued
    link_model = apps.get_model(APP, "Link")
    links = link_model.objects.filter(posts__kind=kind, posts__post_id=post_id, archived_url="").distinct()
    saved, missing = [], 0
    for link in links:
        snapshot = snapshot_of(link.url) if can_be_archived(link.url) else ""
        if snapshot:
            link_model.objects.filter(pk=link.pk).update(archived_url=snapshot)
            saved.append(link.pk)
        elif snapshot is None:
            missing += 1
    if saved:
        links_changed.send(sender=link_model, link_ids=saved)  # cards showing an archived copy change
        posts_changed.send(sender=link_model)  # pages showing an archived copy change
    if missing:
        retry_later(archive_post_links, attempt, kind, post_id)
