"""Atom feeds that page back through the whole blog: the generator and the paging, not which posts.

`AtomWithContent` writes each entry's whole post as <content> (Django's Atom1Feed writes only a
<summary>), xml:base so that relative links inside posts resolve on the site, the previous and next
pages of an archived feed (RFC 5005: `?page=2` holds older posts) and the WebSub hub when there is
one. Entries can be written once and stored (`entry_xml`), then added as they are.

`PagedFeed` is a django.contrib.syndication Feed whose subclass says which rows (`rows(obj)`,
newest first) and where their stored entries are (`stored_cards(rows)`: objects with `feed_entry`,
`created` and `last_modified`); it serves them FEED_LENGTH at a time, `?page=N` the N-th page (404
past the end), linking its neighbours with `Link:` headers and Atom <link> elements.

`PostsFeed` is a PagedFeed of posts: what each entry holds (title, permalink, a tag: URI, dates, tags
and the whole post) comes from the post's own methods (feed_title, get_absolute_url, last_modified,
syndicated_html); subclasses say which posts and the feed's titles and links.
"""

import io
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.http import Http404
from django.utils.feedgenerator import Atom1Feed
from django.utils.xmlutils import SimplerXMLGenerator

from blogworks import text

FEED_LENGTH = 30


class AtomWithContent(Atom1Feed):
    """Atom with the whole post in <content>, xml:base, paging links and the WebSub hub."""

    def root_attributes(self):
        return {**super().root_attributes(), "xml:base": settings.LINKBLOG_BASE_URL + "/"}

    def add_root_elements(self, handler):
        super().add_root_elements(handler)
        for rel in ("previous", "next"):
            if self.feed.get(rel):
                handler.addQuickElement("link", "", {"rel": rel, "href": self.feed[rel]})
        if settings.LINKBLOG_WEBSUB_HUB:  # WebSub: subscribers hear of new posts from the hub we ping
            handler.addQuickElement("link", "", {"rel": "hub", "href": settings.LINKBLOG_WEBSUB_HUB})

    def add_item(self, **fields):
        super().add_item(**{name: text.xml_text(value) for name, value in fields.items()})

    def add_item_elements(self, handler, item):
        super().add_item_elements(handler, item)
        handler.addQuickElement("content", item["content"], {"type": "html"})

    def entry_xml(self, item):
        """One item's <entry> element, as write_items() would have written it."""
        out = io.StringIO()
        handler = SimplerXMLGenerator(out, "utf-8", short_empty_elements=True)
        handler.startElement("entry", self.item_attributes(item))
        self.add_item_elements(handler, item)
        handler.endElement("entry")
        return out.getvalue()

    def add_stored_entry(self, entry, published, updated):
        """An <entry> written before (stored with its post's card), with its dates: the feed's
        <updated> and Last-Modified are its newest entry's."""
        self.items.append({"entry": entry, "pubdate": published, "updateddate": updated})

    def write_items(self, handler):
        for item in self.items:
            handler.ignorableWhitespace(item["entry"])  # written as it is: it is XML already


class PagedFeed(Feed):
    """FEED_LENGTH stored entries a page, `?page=N` for older ones; subclasses say which rows
    (`rows`), where their stored entries are (`stored_cards`) and what an entry says (item_*)."""

    feed_type = AtomWithContent

    def rows(self, obj):
        raise NotImplementedError

    def stored_cards(self, rows):
        raise NotImplementedError

    def __call__(self, request, *args, **kwargs):
        self.links = {}
        response = super().__call__(request, *args, **kwargs)
        if self.links:
            response["Link"] = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in self.links.items())
        return response

    def get_feed(self, obj, request):
        number = page_number(request)
        offset = (number - 1) * FEED_LENGTH
        rows = list(self.rows(obj)[offset : offset + FEED_LENGTH + 1])
        if number > 1 and not rows:
            raise Http404("No such page")
        if number > 1:
            self.links["previous"] = page_url(request, number - 1)
        if len(rows) > FEED_LENGTH:
            self.links["next"] = page_url(request, number + 1)
        feed = super().get_feed(obj, request)
        for card in self.stored_cards(rows[:FEED_LENGTH]):
            feed.add_stored_entry(card.feed_entry, card.created, card.last_modified)
        return feed

    def stored_entry(self, item):
        """The item's <entry>, from the item_* methods, to be stored and added as it is later."""
        feed = self.feed_type(title="", link="", description="")
        feed.add_item(title=self.item_title(item), link=self.item_link(item), description=self.item_description(item),
                      unique_id=self.item_guid(item), unique_id_is_permalink=self.item_guid_is_permalink,
                      pubdate=self.item_pubdate(item), updateddate=self.item_updateddate(item),
                      categories=self.item_categories(item), **self.item_extra_kwargs(item))
        return feed.entry_xml(feed.items[0])

    def feed_extra_kwargs(self, obj):
        return self.links

    def items(self, obj):
        return []  # the entries are stored: get_feed adds them

    def feed_guid(self, obj):
        return self.feed_url(obj)


class PostsFeed(PagedFeed):
    """Posts as Atom entries on LINKBLOG_BASE_URL, by LINKBLOG_AUTHOR."""

    def author_name(self):
        return settings.LINKBLOG_AUTHOR

    def item_title(self, post):
        # Atom titles are plain text: Django's default would escape them a second time.
        return post.feed_title()

    def item_description(self, post):
        return None  # the whole post goes into <content>, see item_extra_kwargs

    def item_link(self, post):
        return settings.LINKBLOG_BASE_URL + post.get_absolute_url()

    def item_guid(self, post):
        """A tag: URI from the site's host and the permalink: the same on every request, and
        unchanged by edits to the title or text, or by moving the site from http to https."""
        host = urlsplit(settings.LINKBLOG_BASE_URL).hostname
        return f"tag:{host},{post.created:%Y-%m-%d}:{post.get_absolute_url()}"

    item_guid_is_permalink = False

    def item_pubdate(self, post):
        return post.created

    def item_updateddate(self, post):
        return post.last_modified  # an edit re-surfaces the post in feed readers

    def item_categories(self, post):
        return [tag.tag for tag in post.tags.all()]

    def item_extra_kwargs(self, post):
        return {"content": post.syndicated_html()}


def page_number(request):
    """The feed page `?page=` asks for: 1 when absent, 404 when it is not a positive number."""
    page = request.GET.get("page", "1")
    if not (page.isascii() and page.isdigit() and 0 < int(page) < 10**6):
        raise Http404("No such page")
    return int(page)


def page_url(request, number):
    """The absolute URL of this feed's page `number` (page 1 is the feed's own URL, without ?page=)."""
    query = request.GET.copy()
    query.pop("page", None)
    if number > 1:
        query["page"] = number
    return settings.LINKBLOG_BASE_URL + request.path + (f"?{query.urlencode()}" if query else "")
