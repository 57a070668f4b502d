"""Atom feeds: everything, each kind, each tag and combination of tags, read with feedparser."""

from datetime import datetime, timezone

import feedparser
import pytest
from factories import at
from reader_helpers import add_posts, assert_queries_do_not_grow, head

pytestmark = pytest.mark.django_db

BASE = "https://blog.example.com"


@pytest.fixture(autouse=True)
def site(settings):
    settings.LINKBLOG_BASE_URL = BASE
    settings.LINKBLOG_AUTHOR = "Ada Author"
    settings.LINKBLOG_TITLE = "Ada's links"


def parse(client, url):
    """Fetch a feed and parse it as a feed reader would; it must be well-formed Atom."""
    response = client.get(url)
    assert response.status_code == 200, url
    assert response["Content-Type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    return feed


def links(feed):
    return [entry.link for entry in feed.entries]


def test_everything_feed_has_every_kind_newest_first_without_drafts(client, make):
    entry = make.entry("An entry", created=at(2024, 1, 3))
    link = make.blogmark("A link", created=at(2024, 1, 2))
    quote = make.quotation(source="Someone wise", created=at(2024, 1, 1))
    make.entry("Secret draft", created=at(2024, 2, 1), is_draft=True)
    feed = parse(client, "/atom/everything/")
    assert links(feed) == [BASE + post.get_absolute_url() for post in (entry, link, quote)]
    assert [e.title for e in feed.entries] == ["An entry", "A link", "Quoting Someone wise"]
    assert "Secret" not in str(feed)


def test_unknown_feed_is_404(client):
    assert client.get("/atom/comments/").status_code == 404


def test_feed_holds_the_thirty_newest_posts(client, make):
    posts = add_posts(make, 35)
    feed = parse(client, "/atom/everything/")
    assert len(feed.entries) == 30
    assert links(feed) == [BASE + post.get_absolute_url() for post in reversed(posts[5:])]


@pytest.mark.parametrize(
    "url, kind",
    [("/atom/entries/", "entry"), ("/atom/links/", "blogmark"), ("/atom/quotations/", "quotation")],
)
def test_each_kind_has_its_own_feed(client, make, url, kind):
    posts = {
        "entry": make.entry(created=at(2024, 1, 1)),
        "blogmark": make.blogmark(created=at(2024, 1, 2)),
        "quotation": make.quotation(created=at(2024, 1, 3)),
    }
    getattr(make, kind)(is_draft=True, created=at(2024, 1, 4))
    feed = parse(client, url)
    assert links(feed) == [BASE + posts[kind].get_absolute_url()]


def test_feed_metadata_comes_from_settings(client, make):
    make.entry(created=at(2024, 5, 1))
    feed = parse(client, "/atom/everything/")
    assert feed.feed.title == "Ada's links"
    assert feed.feed.author == "Ada Author"
    assert feed.feed.link == BASE + "/"
    assert feed.feed.id == BASE + "/atom/everything/"
    assert {"rel": "self", "type": "application/atom+xml", "href": BASE + "/atom/everything/"} in feed.feed.links


def test_feed_updated_is_the_newest_post_and_entries_carry_their_dates(client, make):
    make.entry(created=at(2023, 6, 1, hour=8))
    make.blogmark(created=at(2024, 2, 29, hour=23, minute=30))
    make.blogmark(created=at(2025, 1, 1), is_draft=True)
    feed = parse(client, "/atom/everything/")
    assert datetime(*feed.feed.updated_parsed[:6], tzinfo=timezone.utc) == at(2024, 2, 29, hour=23, minute=30)
    newest = feed.entries[0]
    assert datetime(*newest.published_parsed[:6], tzinfo=timezone.utc) == at(2024, 2, 29, hour=23, minute=30)
    assert datetime(*newest.updated_parsed[:6], tzinfo=timezone.utc) == at(2024, 2, 29, hour=23, minute=30)


def test_entries_carry_tags_as_categories(client, make):
    make.entry(tags=["django", "python"])
    make.quotation(tags=[])
    feed = parse(client, "/atom/everything/")
    categories = [sorted(tag.term for tag in entry.get("tags", [])) for entry in feed.entries]
    assert sorted(categories) == [[], ["django", "python"]]


def test_ids_are_stable_across_requests_and_edits(client, make):
    post = make.entry("First title", body="First body", created=at(2024, 3, 1))
    first = parse(client, "/atom/everything/").entries[0].id
    assert first == parse(client, "/atom/everything/").entries[0].id
    post.title, post.body = "A better title", "A better body"
    post.save()
    assert parse(client, "/atom/everything/").entries[0].id == first
    assert first.startswith("tag:blog.example.com,2024-03-01:")
    # The same post has the same id in every feed it appears in.
    make.tag("t")
    post.tags.add(make.tag("t"))
    assert parse(client, "/atom/entries/").entries[0].id == first
    assert parse(client, "/tags/t.atom").entries[0].id == first


def test_ids_differ_between_posts_with_the_same_slug_on_different_days(client, make):
    make.entry("Same", created=at(2024, 3, 1))
    make.entry("Same", created=at(2024, 3, 2))
    ids = [entry.id for entry in parse(client, "/atom/everything/").entries]
    assert len(set(ids)) == 2


def test_entry_content_is_the_full_sanitized_html(client, make):
    body = "First paragraph.\n\nSecond *paragraph* with [a link](/2020/Jan/1/older/).\n\n<script>alert(1)</script>"
    make.entry("Long", body=body)
    content = parse(client, "/atom/entries/").entries[0].content[0]
    assert content.type == "text/html"
    assert "First paragraph." in content.value
    assert "Second <em>paragraph</em>" in content.value
    assert "<script" not in content.value
    # Relative links inside a post resolve against the site (xml:base).
    assert 'href="https://blog.example.com/2020/Jan/1/older/"' in content.value


def test_blogmark_content_carries_the_link_and_via(client, make):
    make.blogmark(
        "The link title",
        link_url="https://example.org/article",
        commentary="Worth *reading*.",
        via_url="https://friend.example/",
        via_title="A friend",
    )
    value = parse(client, "/atom/links/").entries[0].content[0].value
    assert '<a href="https://example.org/article">The link title</a>' in value
    assert '<a href="https://friend.example/">via A friend</a>' in value
    assert "Worth <em>reading</em>." in value


def test_quotation_content_carries_the_quote_and_its_source(client, make):
    make.quotation("To be *or* not.", source="Hamlet", source_url="https://example.org/hamlet")
    value = parse(client, "/atom/quotations/").entries[0].content[0].value
    assert "<blockquote" in value and "To be <em>or</em> not." in value
    assert '<a href="https://example.org/hamlet">Hamlet</a>' in value


def test_unsafe_source_urls_are_dropped_from_feed_content(client, make):
    make.quotation("Words", source="Mallory", source_url="javascript:alert(1)")
    value = parse(client, "/atom/quotations/").entries[0].content[0].value
    assert "javascript:" not in value
    assert "Mallory" in value


def test_titles_with_markup_characters_arrive_as_written(client, make):
    make.entry("Fish & chips <b>now</b>")
    make.quotation(source="Ben & Jerry")
    titles = [entry.title for entry in parse(client, "/atom/everything/").entries]
    assert sorted(titles) == ["Fish & chips <b>now</b>", "Quoting Ben & Jerry"]


def test_tag_feed_has_only_posts_with_that_tag(client, make):
    tagged = make.blogmark(tags=["django"], created=at(2024, 1, 2))
    make.entry(tags=["python"], created=at(2024, 1, 3))
    make.entry(tags=["django"], created=at(2024, 1, 4), is_draft=True)
    feed = parse(client, "/tags/django.atom")
    assert links(feed) == [BASE + tagged.get_absolute_url()]
    assert feed.feed.link == BASE + "/tags/django/"
    assert "django" in feed.feed.title


def test_combined_tag_feed_has_only_posts_with_all_the_tags(client, make):
    both = make.entry(tags=["django", "python"], created=at(2024, 1, 1))
    all_three = make.quotation(tags=["django", "python", "sql"], created=at(2024, 1, 2))
    make.entry(tags=["django"], created=at(2024, 1, 3))
    make.entry(tags=["python"], created=at(2024, 1, 4))
    assert links(parse(client, "/tags/django+python.atom")) == [
        BASE + all_three.get_absolute_url(),
        BASE + both.get_absolute_url(),
    ]
    assert links(parse(client, "/tags/python+sql+django.atom")) == [BASE + all_three.get_absolute_url()]


def test_tag_feed_of_a_tag_without_published_posts_is_404(client, make):
    make.tag("quiet")
    make.entry("Unfinished", tags=["secret"], is_draft=True)
    make.entry("Public", tags=["public"])
    assert client.get("/tags/quiet.atom").status_code == 404
    assert client.get("/tags/secret.atom").status_code == 404
    assert client.get("/tags/public+secret.atom").status_code == 404


def test_tag_feeds_refuse_unknown_tags_and_too_many_tags(client, make):
    make.entry(tags=["a", "b", "c", "d"])
    assert client.get("/tags/nope.atom").status_code == 404
    assert client.get("/tags/a+nope.atom").status_code == 404
    response = client.get("/tags/a+b+c+d.atom")
    assert response.status_code == 400
    assert "at most 3 tags" in response.content.decode()


def test_pages_point_feed_readers_at_their_feeds(client, make):
    make.entry(tags=["django", "python"])
    for page, feed_url in [
        ("/", "/atom/everything/"),
        ("/tags/django/", "/tags/django.atom"),
        ("/tags/django+python/", "/tags/django+python.atom"),
    ]:
        alternates = [
            link for link in head(client.get(page)).links
            if link.get("rel") == "alternate" and link.get("type") == "application/atom+xml"
        ]
        assert [link["href"] for link in alternates] == [feed_url], page
        # Following the advertised link gives a feed with the page's posts.
        assert len(parse(client, feed_url).entries) == 1


@pytest.mark.parametrize("url", ["/atom/everything/", "/atom/links/", "/tags/django.atom", "/tags/django+python.atom"])
def test_feed_queries_do_not_grow_with_posts(client, make, django_assert_max_num_queries, url):
    # 10: the links' states, and the first page a cache generation stores also asks when the next
    # scheduled post goes live.
    assert_queries_do_not_grow(
        client, make, url, django_assert_max_num_queries, limit=10, tags=("django", "python")
    )


def test_noncharacters_in_a_post_or_a_search_leave_every_feed_well_formed(client, make):
    """U+FFFE and U+FFFF pass the models' rules (text may hold them), but XML 1.0 cannot: a feed
    holding one is refused whole by feed readers, and by an XML parser here."""
    from xml.etree import ElementTree

    make.blogmark("Pasted \uffff title", created=at(2024, 1, 2), tags=["pasted"])
    make.entry("Fine", body="Text \ufffe here.", created=at(2024, 1, 1))
    for url in ["/atom/everything/", "/atom/links/", "/atom/entries/", "/tags/pasted.atom", "/search.atom?q=pasted",
                "/search.atom?q=%EF%BF%BE"]:
        response = client.get(url)
        assert response.status_code == 200, url
        ElementTree.fromstring(response.content)  # raises on a character XML cannot carry


def test_entries_stored_by_code_that_let_noncharacters_through_are_rendered_again(client, make, monkeypatch):
    """An upgrade from code whose feeds kept U+FFFF: the Atom entries it stored must not outlive it."""
    import re
    from xml.etree import ElementTree

    from blogworks import cards, text
    from blogworks.serving import forget_cached_pages

    make.blogmark("Pasted \uffff title", created=at(2024, 1, 2))
    old = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
    monkeypatch.setattr(text, "NOT_IN_XML", old), monkeypatch.setattr(cards, "NOT_IN_XML", old)
    cards.forget_digests()
    assert "\uffff" in client.get("/atom/everything/").content.decode()  # stored as the old code wrote it
    monkeypatch.undo()
    cards.forget_digests(), forget_cached_pages()  # a deploy starts a fresh page cache (serve-production)
    ElementTree.fromstring(client.get("/atom/everything/").content)


def test_control_characters_in_old_posts_are_dropped_from_feeds_not_a_500(client, make):
    """XML 1.0 cannot carry C0 control characters (a vertical tab pasted from a PDF, a form feed in
    an old export). The site shows such a post; its feeds must still parse, without those characters."""
    make.entry("Tab\x0bbed\x0c title", body="Body with a \x1b escape and\ttab.", created=at(2024, 1, 3))
    make.blogmark("Bell\x07 link", created=at(2024, 1, 2))
    make.quotation(source="So\x08urce", created=at(2024, 1, 1))
    feed = parse(client, "/atom/everything/")
    titles = [entry.title for entry in feed.entries]
    assert "Tabbed title" in titles
    assert "Bell link" in titles
    entry = next(entry for entry in feed.entries if entry.title == "Tabbed title")
    assert "Body with a  escape and" in entry.content[0].value
