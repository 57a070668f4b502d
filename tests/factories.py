"""Small factories for tests: real model instances saved through the real save() path."""

from datetime import datetime, timedelta, timezone
from itertools import count

from linkblog import Blogmark, Entry, Quotation, Tag

_numbers = count(1)


def at(year, month=1, day=1, hour=12, minute=0):
    """An aware UTC datetime; minutes past 59 roll over, which keeps long series of posts simple."""
    return datetime(year, month, day, hour, tzinfo=timezone.utc) + timedelta(minutes=minute)


class Factories:
    def tag(self, name, description=""):
        tag, _ = Tag.objects.get_or_create(tag=name, defaults={"description": description})
        return tag

    def _tagged(self, post, tags):
        post.save()
        post.tags.set([self.tag(name) if isinstance(name, str) else name for name in tags])
        return post

    def entry(self, title=None, body="A paragraph.", tags=(), **fields):
        title = title or f"Entry {next(_numbers)}"
        return self._tagged(Entry(title=title, body=body, **fields), tags)

    def blogmark(self, link_title=None, link_url="https://example.com/", commentary="", tags=(), **fields):
        link_title = link_title or f"Link {next(_numbers)}"
        return self._tagged(
            Blogmark(link_title=link_title, link_url=link_url, commentary=commentary, **fields), tags
        )

    def quotation(self, quotation="Words worth keeping.", source=None, tags=(), **fields):
        source = source or f"Someone {next(_numbers)}"
        return self._tagged(Quotation(quotation=quotation, source=source, **fields), tags)


def relist():
    """Bring the listing store in step with every post: for tests that write with bulk_create(), which
    sends no signals (the app's own bulk writes, import and tag merge, tell the store themselves)."""
    from linkblog import POST_MODELS, store_posts_listing

    store_posts_listing({kind: model.objects.values_list("pk", flat=True) for kind, model in POST_MODELS.items()})
