"""Import and export: our NDJSON, browser bookmarks, Pinboard and feeds, against the real database."""

import io
from html.parser import HTMLParser
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from blogworks.formats import ImportFailed, detect_format
from blogworks.importer import rendering_processes
from blogworks.listing import load_posts
from linkblog import POST_MODELS, Blogmark, Entry, Quotation, Tag, export, import_posts, posts_changed, search_posts

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parent / "data"


def import_path(name, **options):
    with open(DATA / name, "rb") as stream:
        return import_posts(stream, **options)


def import_bytes(data, **options):
    return import_posts(io.BytesIO(data), **options)


def ndjson(*records):
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()


def counts(report):
    """{kind: (created, updated, unchanged, skipped)} for the kinds the import touched."""
    return {kind: tuple(numbers) for kind, numbers in report.rows()}


def export_text(**options):
    return "".join(export("ndjson", **options))


def everything():
    """Every post and tag as comparable tuples, to show that nothing changed."""
    posts = [(type(post).__name__, post.pk, post.slug, post.created, post.html, post.is_draft, tuple(post.tags.values_list("tag", flat=True)))
             for model in (Entry, Blogmark, Quotation) for post in model.objects.order_by("pk")]
    return posts, list(Tag.objects.values_list("pk", "tag", "description", "description_html"))


# --- Our NDJSON ------------------------------------------------------------------------------


def test_ndjson_brings_in_every_kind_with_its_tags_dates_and_drafts():
    report = import_path("blog.ndjson")
    assert not report.failed
    assert counts(report) == {"tag": (4, 0, 0, 0), "entry": (3, 0, 0, 0), "blogmark": (2, 0, 0, 0), "quotation": (1, 0, 0, 0)}
    entry = Entry.objects.get(slug="weeknotes-sqlite")
    assert entry.created == datetime(2023, 3, 14, 9, 26, 53, tzinfo=timezone.utc)
    assert sorted(entry.tags.values_list("tag", flat=True)) == ["python", "sqlite"]
    assert "<h2>WAL mode</h2>" in entry.html and entry.word_count > 20
    assert Entry.objects.get(slug="draft-notes").is_draft
    assert Tag.objects.get(tag="django").description_html.startswith('<p>The <a href="https://www.djangoproject.com/"')
    assert Tag.objects.filter(tag="plugins").exists()  # used by a post but not declared: created
    blogmark = Blogmark.objects.get(slug="unicode-titles")
    assert blogmark.link_title == "Ünïcödé — titles “quoted” 日本語"
    assert blogmark.created == datetime(2024, 10, 1, 10, 0, tzinfo=timezone.utc)  # +02:00 stored as UTC


def test_imported_posts_are_published_on_their_permalinks(client):
    import_path("blog.ndjson")
    response = client.get("/2024/Sep/24/nanodjango/")
    assert response.status_code == 200
    assert "Full Django in a <em>single file</em>" in response.content.decode()
    assert client.get("/2024/Oct/2/draft-notes/").status_code == 404


def test_reimporting_the_same_file_creates_nothing_and_changes_nothing():
    import_path("blog.ndjson")
    before = everything()
    report = import_path("blog.ndjson")
    assert counts(report) == {"tag": (0, 0, 3, 0), "entry": (0, 0, 3, 0), "blogmark": (0, 0, 2, 0), "quotation": (0, 0, 1, 0)}
    assert everything() == before


def test_a_changed_record_updates_its_post_and_leaves_the_others_alone():
    import_path("blog.ndjson")
    lines = (DATA / "blog.ndjson").read_text().splitlines()
    nanodjango = json.loads(lines[4])
    nanodjango.update(link_title="nanodjango, updated", tags=["django"], created="2024-09-24T23:00:00+00:00")
    lines[4] = json.dumps(nanodjango)
    report = import_bytes(("\n".join(lines) + "\n").encode())
    assert counts(report)["blogmark"] == (0, 1, 1, 0)
    assert counts(report)["entry"] == (0, 0, 3, 0)
    blogmark = Blogmark.objects.get(slug="nanodjango")
    assert blogmark.link_title == "nanodjango, updated"
    assert list(blogmark.tags.values_list("tag", flat=True)) == ["django"]
    assert blogmark.created.hour == 23
    assert Blogmark.objects.count() == 2


def test_an_imported_change_dates_the_edit_as_a_save_does(client):
    import_path("blog.ndjson")
    blogmark = Blogmark.objects.get(slug="nanodjango")
    assert blogmark.updated is None
    record = json.loads((DATA / "blog.ndjson").read_text().splitlines()[4])
    import_bytes(ndjson({**record, "tags": ["django", "python"]}))  # only its tags: not an edit of its content
    assert Blogmark.objects.get(slug="nanodjango").updated is None
    import_bytes(ndjson({**record, "commentary": "Rewritten."}))
    edited = Blogmark.objects.get(slug="nanodjango")
    assert edited.updated is not None and edited.updated > edited.created
    assert f"<updated>{edited.updated.isoformat()}" in client.get("/atom/everything/").content.decode()
    import_bytes(ndjson({**record, "commentary": "Rewritten."}))  # the same again: unchanged, the date stays
    assert Blogmark.objects.get(slug="nanodjango").updated == edited.updated


def test_a_record_without_a_date_imported_twice_keeps_its_first_date(monkeypatch):
    from django.utils import timezone as django_timezone

    data = ndjson({"type": "entry", "slug": "no-date", "title": "No date", "body": "B."})
    first = django_timezone.now().replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(django_timezone, "now", lambda: first)
    import_bytes(data)
    monkeypatch.setattr(django_timezone, "now", lambda: first.replace(hour=11))  # later the same day
    report = import_bytes(data)
    assert counts(report) == {"entry": (0, 0, 1, 0)}
    assert Entry.objects.get().created == first


def test_missing_optional_keys_take_defaults_and_unknown_keys_are_counted():
    report = import_bytes(ndjson(
        {"type": "blogmark", "slug": "minimal", "link_url": "https://example.com/", "link_title": "Minimal",
         "created": "2024-01-01T00:00:00Z", "colour": "blue", "score": 3},
        {"type": "tag", "tag": "misc", "mood": "happy"},
    ))
    blogmark = Blogmark.objects.get(slug="minimal")
    assert (blogmark.via_url, blogmark.commentary, blogmark.is_draft, blogmark.tags.count()) == ("", "", False, 0)
    assert dict(report.unknown_keys) == {"colour": 1, "score": 1, "mood": 1}


def test_posts_without_a_slug_get_one_and_are_found_again_on_reimport():
    data = ndjson(
        {"type": "entry", "title": "Hello world", "body": "One.", "created": "2024-01-01T10:00:00Z"},
        {"type": "quotation", "quotation": "Hi.", "source": "Hello World", "created": "2024-01-01T11:00:00Z"},
        {"type": "blogmark", "link_url": "https://example.com/a", "link_title": "Hello world", "created": "2024-01-01T12:00:00Z"},
    )
    import_bytes(data)
    # one permalink per day: no two posts of any kind share a slug on the same day
    assert sorted([Entry.objects.get().slug, Quotation.objects.get().slug, Blogmark.objects.get().slug]) == [
        "hello-world", "hello-world-2", "hello-world-3"]
    report = import_bytes(data)
    assert counts(report) == {"entry": (0, 0, 1, 0), "blogmark": (0, 0, 1, 0), "quotation": (0, 0, 1, 0)}


def test_the_same_post_twice_in_one_file_is_left_out_with_a_note():
    record = {"type": "blogmark", "slug": "twice", "link_url": "https://example.com/", "link_title": "Twice", "created": "2024-01-01T10:00:00Z"}
    report = import_bytes(ndjson(record, {**record, "link_title": "Twice again"}, {"type": "tag", "tag": "t"}, {"type": "tag", "tag": "t"}))
    assert not report.failed
    assert Blogmark.objects.get().link_title == "Twice"
    assert sorted(report.skipped) == [("line 2", "is the same blogmark as line 1, left out"),
                                      ("line 4", "declares the tag “t” again (line 3 did), left out")]


def test_a_bad_line_means_nothing_is_written_and_the_error_names_the_line():
    report = import_path("broken.ndjson")
    assert report.failed
    assert report.problems == [("line 3", "is not valid JSON: Invalid control character at (column 103)")]
    assert not Blogmark.objects.exists() and not Entry.objects.exists() and not Tag.objects.exists()


def test_every_problem_is_listed_not_only_the_first():
    report = import_path("missing-field.ndjson")
    assert report.failed
    assert report.problems == [
        ("line 2", "has no link_title (required)"),
        ("line 3", "has no source (required)"),
        ("line 4", "has a bad link_url: “javascript:alert(document.cookie)” is not a web link (http:// or https://, then a host)."),
    ]
    assert not Entry.objects.exists() and not Blogmark.objects.exists()


def test_skip_bad_writes_the_good_records_and_lists_each_skipped_one():
    report = import_path("missing-field.ndjson", skip_bad=True)
    assert not report.failed
    assert [where for where, _ in report.skipped] == ["line 2", "line 3", "line 4"]
    assert Entry.objects.get().slug == "complete"
    assert list(Blogmark.objects.values_list("slug", flat=True)) == ["fine"]
    assert counts(report)["blogmark"] == (1, 0, 0, 2)
    assert counts(report)["quotation"] == (0, 0, 0, 1)


def test_a_dry_run_counts_what_would_happen_and_writes_nothing():
    report = import_path("blog.ndjson", dry_run=True)
    assert report.dry_run and not report.failed
    assert counts(report)["entry"] == (3, 0, 0, 0)
    assert not Entry.objects.exists() and not Tag.objects.exists()


def test_records_of_the_wrong_shape_are_refused_with_a_reason():
    report = import_bytes(b"\n".join([
        b'["not", "an", "object"]',
        b'{"type": "podcast"}',
        b'{"type": "entry", "title": "T", "body": "B", "tags": "django"}',
        b'{"type": "entry", "title": "T", "body": "B", "tags": ["Not A Slug!"]}',
        b'{"type": "entry", "title": "T", "body": "B", "slug": "has spaces"}',
        b'{"type": "entry", "title": "' + b"x" * 300 + b'", "body": "B"}',
        b'{"type": "entry", "title": "T", "body": "B", "is_draft": "yes"}',
        b'{"type": "tag", "tag": ""}',
        b"",
    ]), format="ndjson")
    assert [where for where, _ in report.problems] == [f"line {number}" for number in range(1, 9)]
    messages = [message for _, message in report.problems]
    assert messages[1].startswith('has an unknown type "podcast"')
    assert messages[2] == "has tags that are not a list"
    assert messages[3] == "has a tag that is not a slug (letters, digits, - and _): “not a slug!”"
    assert messages[5] == "has a bad title: Ensure this value has at most 255 characters (it has 300)."


def test_a_type_that_is_a_list_or_an_object_is_a_bad_record_not_a_crash():
    report = import_bytes(ndjson({"type": ["entry"], "title": "T", "body": "B"}, {"type": {"a": 1}, "title": "T", "body": "B"},
                                 {"type": "entry", "title": "Good", "body": "B"}), skip_bad=True)
    assert [(where, message[:30]) for where, message in report.skipped] == [
        ("line 1", 'has an unknown type ["entry"] '), ("line 2", 'has an unknown type {"a": 1} (')]
    assert list(Entry.objects.values_list("title", flat=True)) == ["Good"]


def test_a_date_before_the_year_1_in_utc_is_refused_as_such():
    report = import_bytes(ndjson({"type": "entry", "title": "T", "body": "B", "created": "0001-01-01T00:00:00+01:00"}))
    assert report.problems == [("line 1", "has a created date before the year 1 in UTC: “0001-01-01T00:00:00+01:00”")]


def test_dates_far_in_the_future_and_before_1970_are_kept_exactly(client):
    report = import_path("dates.ndjson")
    assert not report.failed
    created = dict(Blogmark.objects.values_list("slug", "created"))
    assert created["far-future"] == datetime(9999, 12, 30, 23, 59, 59, tzinfo=timezone.utc)
    assert created["before-1970"] == datetime(1901, 12, 13, 20, 45, 52, tzinfo=timezone.utc)
    assert created["year-one"] == datetime(1, 1, 1, tzinfo=timezone.utc)
    assert created["naive"] == datetime(2020, 2, 29, 23, 30, tzinfo=timezone.utc)
    assert created["offset"] == datetime(2020, 2, 29, 20, 30, tzinfo=timezone.utc)
    assert created["date-only"] == datetime(2021, 7, 4, tzinfo=timezone.utc)
    assert client.get("/1901/Dec/13/before-1970/").status_code == 200
    assert client.get("/9999/Dec/30/far-future/").status_code == 404  # scheduled: readers see it in 9999
    exported = export_text()
    assert '"created": "0001-01-01T00:00:00+00:00"' in exported
    assert '"created": "9999-12-30T23:59:59+00:00"' in exported


def test_unreadable_dates_are_refused_with_a_message():
    report = import_path("bad-dates.ndjson")
    assert report.problems == [
        ("line 1", "has a created date that is not ISO 8601: “last Tuesday”"),
        ("line 2", "has a created date that is not ISO 8601: “2024-13-01T00:00:00Z”"),
        ("line 3", "has a created date past the end of 9999-12-30 UTC (a post needs a day after it): “9999-12-31T23:00:00-05:00”"),
        ("line 4", "has a created date that is not text"),
        ("line 5", "has a created date past the end of 9999-12-30 UTC (a post needs a day after it): “9999-12-31T12:00:00Z”"),
    ]


def test_a_huge_line_is_refused_by_number_without_reading_it_whole():
    huge = b'{"type": "entry", "title": "Huge", "body": "' + b"x" * (5 * 1024 * 1024) + b'"}\n'
    good = ndjson({"type": "entry", "slug": "small", "title": "Small", "body": "Fine.", "created": "2024-01-01T00:00:00Z"})
    report = import_bytes(good + huge + good.replace(b"small", b"after"), skip_bad=True)
    assert report.skipped == [("line 2", "is longer than 4 MB")]
    assert sorted(Entry.objects.values_list("slug", flat=True)) == ["after", "small"]


def test_latin1_bytes_in_ndjson_are_refused_by_line():
    report = import_path("latin1.ndjson")
    assert report.problems == [("line 2", "is not UTF-8 text (byte 0xe9 at column 115); NDJSON files are UTF-8")]


class Elements(HTMLParser):
    """Every element of a page with its attributes, as a browser would see them."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))


def test_markup_in_imported_text_never_reaches_a_page_as_script(client):
    import_path("scripts.ndjson")
    import_path("bookmarks-scripts.html")
    pages = [client.get(url).content.decode() for url in (
        "/", "/tags/security/", "/tags/xss/", "/2024/May/1/xss-body/", "/2024/May/1/xss-link/", "/2024/May/1/xss-quote/")]
    for html in pages:
        elements = Elements()
        elements.feed(html)
        assert not {"script", "iframe", "svg"} & {tag for tag, _ in elements.found}
        assert not [name for _, attrs in elements.found for name, _ in attrs if name.startswith("on")]
        assert not [value for _, attrs in elements.found for _, value in attrs if "javascript:" in (value or "")]
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt; A title" in pages[3]  # shown as text


# --- Browser bookmarks -----------------------------------------------------------------------


def test_firefox_bookmarks_keep_tags_dates_notes_and_private_flags():
    report = import_path("bookmarks-firefox.html")
    assert not report.failed
    assert report.skipped == [("line 12", "is not a web link (place:), left out"),
                              ("line 25", "is not a web link (javascript:), left out")]
    admin_docs = Blogmark.objects.get(link_url="https://docs.djangoproject.com/en/5.2/ref/contrib/admin/")
    assert admin_docs.link_title == "The Django admin site | Django documentation"
    assert admin_docs.created == datetime.fromtimestamp(1673000000, timezone.utc)
    assert sorted(admin_docs.tags.values_list("tag", flat=True)) == ["admin", "django", "docs"]
    assert admin_docs.commentary == "Everything about ModelAdmin & AdminSite — bookmarked for get_urls()."
    assert admin_docs.slug == "the-django-admin-site-django-documentation"
    csp = Blogmark.objects.get(link_url="https://developer.mozilla.org/en-US/docs/Web/HTTP/CSP")
    assert csp.commentary == "Multi-line note:\nfirst line,\nsecond line."
    assert Blogmark.objects.get(link_url="https://www.sqlite.org/wal.html").is_draft
    assert Blogmark.objects.get(link_url="https://example.com/old").created == datetime(1969, 12, 31, tzinfo=timezone.utc)
    assert Blogmark.objects.get(link_url="https://example.com/milliseconds").created == datetime.fromtimestamp(1700000000, timezone.utc)
    assert Blogmark.objects.count() == 7


def test_reimporting_bookmarks_finds_each_link_again():
    import_path("bookmarks-firefox.html")
    before = everything()
    report = import_path("bookmarks-firefox.html")
    assert counts(report)["blogmark"] == (0, 0, 7, 2)
    assert everything() == before


def test_bookmarks_of_links_blogged_already_never_wipe_notes_tags_or_drafts():
    """A browser's bookmarks carry no note, tags or private flag: importing them over blogmarks that
    have some must leave those as they are, and never publish a draft."""
    written = Blogmark.objects.create(link_url="https://example.com/written", link_title="Written", commentary="My words.")
    written.tags.add(Tag.objects.create(tag="kept"))
    draft = Blogmark.objects.create(link_url="https://example.com/draft", link_title="Draft", is_draft=True)
    bookmarks = b"""<!DOCTYPE NETSCAPE-Bookmark-file-1>
<DL><p>
<DT><A HREF="https://example.com/written" ADD_DATE="1700000000">Written</A>
<DT><A HREF="https://example.com/draft" ADD_DATE="1700000000">Draft, retitled</A>
<DT><A HREF="https://example.com/new" ADD_DATE="1700000000">New</A>
</DL>"""
    report = import_bytes(bookmarks, format="netscape")
    assert counts(report)["blogmark"] == (1, 1, 1, 0)
    written.refresh_from_db(), draft.refresh_from_db()
    assert (written.commentary, list(written.tags.values_list("tag", flat=True))) == ("My words.", ["kept"])
    assert draft.is_draft and draft.link_title == "Draft, retitled"
    assert not Blogmark.objects.get(link_url="https://example.com/new").is_draft
    pinboard = [{"href": "https://example.com/draft", "description": "Draft, retitled", "extended": "", "tags": "",
                 "shared": "yes", "time": "2024-01-01T00:00:00Z"}]
    import_bytes(json.dumps(pinboard).encode(), format="pinboard")
    assert Blogmark.objects.get(link_url="https://example.com/draft").is_draft  # shared there, still a draft here


def test_a_feed_title_written_as_html_is_read_as_text():
    feed = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><id>urn:f</id><updated>2024-01-01T00:00:00Z</updated>
<entry><title type="html">&lt;b&gt;Bold&lt;/b&gt; &amp;amp; title</title><link href="https://example.com/b"/><id>urn:b</id><updated>2024-01-01T00:00:00Z</updated></entry>
<entry><title>Plain &amp; text</title><link href="https://example.com/p"/><id>urn:p</id><updated>2024-01-01T00:00:00Z</updated></entry>
</feed>"""
    import_bytes(feed, format="feed")
    assert dict(Blogmark.objects.values_list("link_url", "link_title")) == {
        "https://example.com/b": "Bold & title", "https://example.com/p": "Plain & text"}


def test_a_bookmark_date_too_big_for_any_unit_is_refused():
    bookmarks = b"""<!DOCTYPE NETSCAPE-Bookmark-file-1><DL><p>
<DT><A HREF="https://example.com/huge" ADD_DATE="1e300">Huge</A>
</DL>"""
    report = import_bytes(bookmarks, format="netscape")
    assert report.problems == [("line 2", "has an ADD_DATE that is not a date: “1e300”")]


def test_bookmark_folders_become_tags_on_request():
    import_path("bookmarks-chrome.html", folders_as_tags=True)
    lwn = Blogmark.objects.get(link_url="https://lwn.net/")
    assert sorted(lwn.tags.values_list("tag", flat=True)) == ["bookmarks-bar", "reading-list"]
    assert Blogmark.objects.get(link_url="https://news.ycombinator.com/").tags.count() == 0


def test_bookmark_folders_are_not_tags_by_default():
    import_path("bookmarks-chrome.html")
    assert not Tag.objects.exists()
    assert Blogmark.objects.get(link_url="https://jvns.ca/").created == datetime.fromtimestamp(1620000000, timezone.utc)
    assert Blogmark.objects.get(link_url="https://www.python.org/").commentary == ""  # the folder's note is not its


def test_a_line_without_a_type_is_refused():
    report = import_bytes(b'{"title": "T", "body": "B"}\n')
    assert report.problems == [("line 1", 'has no "type" (tag, entry, blogmark or quotation)')]


def test_a_bookmarks_file_is_decoded_in_the_character_set_it_declares():
    import_path("bookmarks-latin1-declared.html")
    blogmark = Blogmark.objects.get()
    assert blogmark.link_title == "Café crème à Paris"
    assert blogmark.commentary == "Très bon goût, déjà vu."
    assert list(blogmark.tags.values_list("tag", flat=True)) == ["francais"]


def test_a_bookmarks_file_in_an_undeclared_encoding_is_refused_clearly():
    with pytest.raises(ImportFailed, match=r"not valid utf-8 text \(byte 0xe7 on line 5\)"):
        import_path("bookmarks-latin1-undeclared.html")
    assert not Blogmark.objects.exists()


# --- Pinboard and feeds ------------------------------------------------------------------------


def test_pinboard_export_keeps_titles_notes_tags_dates_and_privacy():
    report = import_path("pinboard.json")
    assert counts(report)["blogmark"] == (4, 0, 0, 0)
    release = Blogmark.objects.get(link_url="https://www.djangoproject.com/weblog/2025/apr/02/django-52-released/")
    assert release.link_title == "Django 5.2 released"
    assert release.commentary.startswith("The new LTS")
    assert release.created == datetime(2025, 4, 2, 15, 4, 5, tzinfo=timezone.utc)
    assert sorted(release.tags.values_list("tag", flat=True)) == ["django", "python", "release"]
    assert Blogmark.objects.get(link_title="Private thoughts").is_draft
    assert list(Blogmark.objects.get(link_title="A long read for later").tags.values_list("tag", flat=True)) == ["toread"]
    symbols = Blogmark.objects.get(link_title="Tags with capitals and symbols")
    assert sorted(symbols.tags.values_list("tag", flat=True)) == ["c", "python", "web_dev"]


def test_tags_that_cannot_become_slugs_are_listed_not_lost_silently():
    item = {"href": "https://example.jp/", "description": "Japanese", "time": "2024-01-01T00:00:00Z", "tags": "日本語 Café python"}
    report = import_bytes(json.dumps([item]).encode(), format="pinboard")
    assert not report.failed
    assert report.skipped == [("item 1", "has the tag “日本語”, which cannot become a slug (a-z, 0-9, -), left out")]
    assert sorted(Blogmark.objects.get().tags.values_list("tag", flat=True)) == ["cafe", "python"]


def test_a_broken_pinboard_file_is_refused_with_its_position():
    with pytest.raises(ImportFailed, match=r"not valid JSON: Expecting \',\' delimiter \(line 1, column 33\)"):
        import_bytes(b'[{"href": "https://example.com" "description": "x"}]', format="pinboard")


def test_an_atom_feed_becomes_blogmarks_with_sanitized_commentary():
    report = import_path("feed-atom.xml")
    assert counts(report)["blogmark"] == (2, 0, 0, 0)
    sqlite = Blogmark.objects.get(link_url="https://www.sqlite.org/appfileformat.html")
    assert sqlite.link_title == "SQLite as an application file format"
    assert sqlite.created == datetime(2024, 10, 30, 8, 15, tzinfo=timezone.utc)
    assert sorted(sqlite.tags.values_list("tag", flat=True)) == ["file-formats", "sqlite"]
    assert "<em>database</em>" in sqlite.html and "script" not in sqlite.commentary
    assert Blogmark.objects.get(link_url="https://datasette.io/").created == datetime(2024, 11, 1, 9, tzinfo=timezone.utc)


def test_an_rss_item_without_a_link_is_a_bad_record():
    report = import_path("feed-rss.xml", skip_bad=True)
    assert report.skipped == [("item 2", "has no link")]
    unicode = Blogmark.objects.get()
    assert unicode.created == datetime(2024, 3, 5, 13, 30, tzinfo=timezone.utc)
    assert "javascript:" not in unicode.html and '<a href="https://unicode.org/"' in unicode.html


@pytest.mark.parametrize("name, format", [
    ("blog.ndjson", "ndjson"), ("bookmarks-firefox.html", "netscape"), ("bookmarks-chrome.html", "netscape"),
    ("pinboard.json", "pinboard"), ("feed-atom.xml", "feed"), ("feed-rss.xml", "feed"),
])
def test_the_format_is_detected_from_the_content(name, format):

    with open(DATA / name, "rb") as stream:
        assert detect_format(stream) == format
        assert stream.tell() == 0


def test_a_file_of_no_known_format_is_refused():
    with pytest.raises(ImportFailed, match="cannot tell the file's format"):
        import_bytes(b"just some text\n")


# --- Export and the round trip -----------------------------------------------------------------


def import_all_samples():
    for name in ("blog.ndjson", "dates.ndjson", "scripts.ndjson", "bookmarks-firefox.html", "pinboard.json", "feed-atom.xml"):
        assert not import_path(name).failed


def test_export_import_into_an_empty_database_export_is_byte_identical():
    import_all_samples()
    first = export_text()
    assert '"is_draft": true' in first
    Tag.objects.all().delete()
    for model in (Entry, Blogmark, Quotation):
        model.objects.all().delete()
    report = import_bytes(first.encode())
    assert not report.failed and not report.skipped
    assert export_text() == first


def test_export_puts_tags_first_then_posts_oldest_first_with_keys_in_order():
    import_path("blog.ndjson")
    lines = [json.loads(line) for line in export_text().splitlines()]
    assert [line["tag"] for line in lines[:4]] == ["django", "plugins", "python", "sqlite"]
    posts = lines[4:]
    assert [post["created"] for post in posts] == sorted(post["created"] for post in posts)
    assert list(posts[0]) == ["type", "slug", "title", "body", "created", "tags", "is_draft"]
    blogmark = next(post for post in posts if post["type"] == "blogmark")
    assert list(blogmark) == ["type", "slug", "link_url", "link_title", "via_url", "via_title", "commentary", "created", "tags", "is_draft"]


def test_export_can_leave_drafts_out():
    import_path("blog.ndjson")
    assert "draft-notes" in export_text()
    assert "draft-notes" not in export_text(include_drafts=False)


def test_bookmarks_export_reads_back_as_the_same_blogmarks():
    import_path("bookmarks-firefox.html")
    exported = "".join(export("netscape")).encode()
    assert exported.startswith(b"<!DOCTYPE NETSCAPE-Bookmark-file-1>")
    before = everything()
    report = import_bytes(exported)
    assert counts(report)["blogmark"] == (0, 0, 7, 0)
    assert everything() == before


# --- Rendering in other processes (the command line's import) ---------------------------------------


def test_posts_rendered_by_worker_processes_store_what_a_save_would():
    with rendering_processes(2, POST_MODELS) as render_map:
        assert render_map is not map
        for name in ("blog.ndjson", "bookmarks-firefox.html", "pinboard.json", "feed-atom.xml"):
            import_path(name, render_map=render_map)
        report = import_bytes(ndjson({"type": "entry", "slug": "djp", "title": "DJP: A plugin system for Django",
                                      "body": "Edited *again*.\n\nA second paragraph.", "created": "2024-09-25T20:44:00Z"}),
                              render_map=render_map)
    assert counts(report)["entry"] == (0, 1, 0, 0)
    posts = [post for model in (Entry, Blogmark, Quotation) for post in model.objects.all()]
    assert len(posts) > 15
    for post in posts:
        stored = {name: getattr(post, name) for name in type(post).rendered("")}
        assert stored == type(post).rendered(getattr(post, post.markdown_field)), post
    assert Entry.objects.get(slug="djp").word_count == 5


def chunked_file():
    """Entries across several chunks: new, changed (a record for an earlier import's post) and repeated."""
    entries = [{"type": "entry", "slug": f"note-{n}", "title": f"Note {n}", "body": f"Note *{n}*.",
                "created": f"2024-01-{n + 1:02}T10:00:00Z", "tags": [f"t{n % 3}"]} for n in range(7)]
    return entries, [{**entries[0], "body": "Changed **again**."}, {**entries[1], "tags": ["retagged"]}, entries[2],
                     *entries[3:], entries[5]]


def test_the_next_chunk_renders_while_one_is_written(monkeypatch):
    """An import asks for a chunk's Markdown before it writes the chunk before it: the rendering
    processes work while the database is written."""
    from blogworks import importer

    monkeypatch.setattr(importer, "IMPORT_BATCH", 2)
    posts_written_when_asked = []

    def render_map(function, texts):
        posts_written_when_asked.append(Entry.objects.count())
        return map(function, texts)

    import_bytes(ndjson(*chunked_file()[0][:6]), render_map=render_map)
    assert posts_written_when_asked == [0, 0, 2]


def test_a_file_of_many_chunks_imports_the_same_rendered_in_processes_or_not(monkeypatch):
    from blogworks import importer

    monkeypatch.setattr(importer, "IMPORT_BATCH", 2)
    first, second = chunked_file()
    import_bytes(ndjson(*first[:3]))
    report = import_bytes(ndjson(*second))
    assert counts(report)["entry"] == (4, 2, 1, 1)
    assert Entry.objects.get(slug="note-0").html == "<p>Changed <strong>again</strong>.</p>"
    assert list(Entry.objects.get(slug="note-1").tags.values_list("tag", flat=True)) == ["retagged"]
    in_this_process = everything()
    Entry.objects.all().delete()
    Tag.objects.all().delete()
    with rendering_processes(2, POST_MODELS) as render_map:
        import_bytes(ndjson(*first[:3]), render_map=render_map)
        assert counts(import_bytes(ndjson(*second), render_map=render_map)) == counts(report)
    strip_ids = lambda state: ([post[:1] + post[2:] for post in state[0]], [tag[1:] for tag in state[1]])  # noqa: E731
    assert strip_ids(everything()) == strip_ids(in_this_process)


# --- Search ----------------------------------------------------------------------------------------


def searched(q):
    results = search_posts(q).results()
    return sorted(str(post) for post in load_posts(list(results), POST_MODELS))


def test_imported_posts_are_searchable_and_later_writes_still_index():
    """The import indexes its posts once at the end (SQLite), not per row: the index must still be whole."""
    entry = {"type": "entry", "slug": "rodents", "title": "About rodents", "body": "The capybara is large.",
             "created": "2024-03-01T10:00:00Z", "tags": ["mammals"]}
    link = {"type": "blogmark", "slug": "wombat", "link_url": "https://example.com/w", "link_title": "Wombat facts",
            "commentary": "Burrowing marsupials.", "created": "2024-03-02T10:00:00Z", "tags": ["mammals", "australia"]}
    import_bytes(ndjson(entry, link))
    assert searched("capybara") == ["About rodents"]
    assert searched("mammals") == ["About rodents", "Wombat facts"]
    assert searched("australia burrowing") == ["Wombat facts"]

    import_bytes(ndjson({**entry, "body": "The quokka smiles.", "tags": ["marsupials"]}, link))
    assert searched("capybara") == [] and searched("quokka") == ["About rodents"]
    assert searched("marsupials") == ["About rodents", "Wombat facts"]  # a tag, and a word of a commentary
    assert searched("mammals") == ["Wombat facts"]

    import_bytes(ndjson({**entry, "body": "Dry run okapi."}), dry_run=True)
    assert import_bytes(ndjson({**link, "commentary": "Failed echidna."}, {"type": "entry"})).failed
    assert searched("okapi") == [] and searched("echidna") == []

    later = Entry.objects.get(slug="rodents")  # after all of that, ordinary saves are indexed again
    later.title = "Renamed platypus"
    later.save()
    later.tags.add(Tag.objects.create(tag="monotremes"))
    assert searched("platypus monotremes") == ["Renamed platypus"]


# --- Signals -------------------------------------------------------------------------------------


def test_one_change_signal_after_commit_and_none_when_nothing_changed(django_capture_on_commit_callbacks):
    received = []

    def listener(sender, **kwargs):
        received.append(sender)

    posts_changed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            import_path("blog.ndjson")
        assert len(received) == 1
        with django_capture_on_commit_callbacks(execute=True):
            import_path("blog.ndjson")
            import_path("broken.ndjson")
            import_path("bookmarks-chrome.html", dry_run=True)
        assert len(received) == 1
    finally:
        posts_changed.disconnect(listener)


# --- Bulk: queries do not grow with the number of lines ------------------------------------------


def many_blogmarks(count, title="Link"):
    return ndjson(*({"type": "blogmark", "slug": f"link-{number}", "link_url": f"https://example.com/{number}",
                     "link_title": f"{title} {number}", "created": f"2024-01-{1 + number % 28:02}T10:00:00Z",
                     "tags": [f"tag-{number % 7}", "common"]} for number in range(count)))


@pytest.mark.parametrize("outcome", ["created", "unchanged", "updated"])
def test_an_import_makes_no_query_per_line(outcome):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queries = []
    for count in (30, 600):
        Blogmark.objects.all().delete()
        Tag.objects.all().delete()
        if outcome != "created":
            import_bytes(many_blogmarks(count))
        with CaptureQueriesContext(connection) as captured:
            report = import_bytes(many_blogmarks(count, title="Changed" if outcome == "updated" else "Link"))
        assert counts(report)["blogmark"][("created", "updated", "unchanged").index(outcome)] == count
        queries.append(len(captured))
    # 570 more lines cost at most a few more batched INSERTs (SQLite caps the parameters of one statement),
    # the posts' and those of the link rows brought in step after the import (Django writes at most
    # ~140 Links, ~250 PostLinks an INSERT on SQLite)
    assert queries[1] - queries[0] <= 570 / 50 + 570 / 140 + 570 / 250
