"""What a post shows other sites: its whole HTML for feed readers and followers, its ActivityPub
object, the feeds it appears in (for WebSub pings) and the pages that hear of it by Webmention.

`Syndicated` is a mixin for the post models (each has `kind`, `feed_name`, `link_field`,
`link_fields`, `tags`, `feed_title()`); the URLs come from route names (this package never imports
linkblog). blogworks/federation.py's jobs send what it makes.
"""

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse


def absolute(route_name, *args):
    return settings.LINKBLOG_BASE_URL + reverse(route_name, args=args)


class Syndicated:
    """What a post shows other sites: feed readers, followers on the fediverse, the pages it links."""

    @property
    def feed_template(self):
        return f"feeds/_{self.kind}.html"

    def syndicated_html(self):
        """The whole post as HTML for other sites: feed readers and followers on the fediverse."""
        return render_to_string(self.feed_template, {"post": self})

    def activitypub_object(self):
        """The post as followers' servers see it (the dict blogworks.activitypub.post_object reads)."""
        return {
            "id": absolute("ap_object", self.kind, self.pk),
            "url": settings.LINKBLOG_BASE_URL + self.get_absolute_url(),
            "title": self.feed_title(),
            "content_html": self.syndicated_html(),
            "link": (getattr(self, self.link_field) if self.link_field else "") or None,
            "tags": [{"name": tag.tag, "url": settings.LINKBLOG_BASE_URL + tag.get_absolute_url()} for tag in self.tags.all()],
            "published": self.created,
        }

    def feed_urls(self):
        """Every feed this post appears in: everything, its kind's, and each of its tags'."""
        feeds = [absolute("feed", "everything"), absolute("feed", self.feed_name)]
        return feeds + [absolute("tag_feed", tag.tag) for tag in self.tags.all()]

    def mentioned_urls(self):
        """The pages this post links that should hear of it by Webmention."""
        return list(dict.fromkeys(getattr(self, name) for name in self.link_fields if getattr(self, name)))
