"""One set of rules for every way in: what the admin's forms, the API and the importer accept or refuse.

Each edge input goes through every path (parametrized), and a blog written through all of them
survives export, import into an empty database and export again byte for byte (issue 12).
"""

import contextlib
import io
import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from factories import at

from blogworks.rules import MAX_TEXT_LENGTH
from linkblog import POST_MODELS, ApiToken, Blogmark, Entry, Quotation, Tag, export, import_posts

pytestmark = pytest.mark.django_db
PATHS = ["admin", "api", "import"]
PLURAL = {"entry": "entries", "blogmark": "blogmarks", "quotation": "quotations"}
REQUIRED = {
    "entry": {"title": "A title", "body": "A body."},
    "blogmark": {"link_url": "https://example.com/", "link_title": "A link"},
    "quotation": {"quotation": "Words.", "source": "Someone"},
}


@pytest.fixture
def writer(django_user_model):
    """write(path, kind, **fields) -> (accepted, what the path said), through the real admin, API or importer."""
    user = django_user_model.objects.create_superuser("author", "author@example.com", "pw-for-tests")
    admin, api = Client(), Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)}")
    admin.force_login(user)

    def write(path, kind, created="2024-05-01T12:00:00Z", tags=(), **fields):
        fields = {**REQUIRED[kind], **fields}
        if path == "admin":
            day, time = created[:10], created[11:19]
            tag_ids = [Tag.objects.get_or_create(tag=name)[0].pk for name in tags]
            data = {"slug": "", **fields, "created_0": day, "created_1": time, "tags": tag_ids}
            # urlencoded, as a browser sends a form: the largest encoding of non-ASCII text
            response = admin.post(f"/admin/linkblog/{kind}/add/", urlencode(data, doseq=True),
                                  content_type="application/x-www-form-urlencoded")
            return response.status_code == 302, " ".join(re.findall(r'errorlist[^>]*>(.*?)</ul>', response.content.decode(), re.S))
        if path == "api":
            payload = json.dumps({**fields, "created": created, "tags": list(tags)})
            response = api.post(f"/api/{PLURAL[kind]}", payload, content_type="application/json")
            return response.status_code == 201, response.json()
        record = {"type": kind, **fields, "created": created, "tags": list(tags)}
        report = import_posts(io.BytesIO(json.dumps(record).encode() + b"\n"))
        return not report.failed, report.problems

    return write


def stored(kind, name):
    return getattr(POST_MODELS[kind].objects.get(), name)


# --- The same edge inputs, every path: accepted by all or refused by all --------------------------

ACCEPTED = [
    ("entry", "title", "x" * 255, "x" * 255),
    ("entry", "body", "y" * MAX_TEXT_LENGTH, "y" * MAX_TEXT_LENGTH),
    ("quotation", "quotation", "😀" * MAX_TEXT_LENGTH, "😀" * MAX_TEXT_LENGTH),  # 2.4 MB as JSON escapes
    ("entry", "title", "Ünïcödé — 日本語 😀", "Ünïcödé — 日本語 😀"),
    ("blogmark", "link_url", "https://example.com/a page (draft).html?q=a b#c d",
     "https://example.com/a%20page%20(draft).html?q=a%20b#c%20d"),
    ("blogmark", "link_url", "https://bücher.de/straße?ä=ö", "https://xn--bcher-kva.de/stra%C3%9Fe?%C3%A4=%C3%B6"),
    ("blogmark", "link_url", 'https://example.com/"quoted"<angle>{curly}`tick`',
     "https://example.com/%22quoted%22%3Cangle%3E%7Bcurly%7D%60tick%60"),
    ("blogmark", "link_url", "https://example.com/50%+off/%E2%9C%93", "https://example.com/50%25+off/%E2%9C%93"),
    ("blogmark", "link_url", "https://under_score.example.com/", "https://under_score.example.com/"),
    ("blogmark", "link_url", "https://example.com/" + "a" * 980, "https://example.com/" + "a" * 980),
    ("quotation", "source_url", "http://example.com/a b", "http://example.com/a%20b"),
]

REFUSED = [
    ("entry", "title", "   "),
    ("entry", "title", "x" * 256),
    ("entry", "title", "null \x00 inside"),
    ("entry", "body", " \n\t "),
    ("entry", "body", "y" * (MAX_TEXT_LENGTH + 1)),
    ("blogmark", "link_title", "   "),
    ("blogmark", "link_url", "javascript:alert(1)"),
    ("blogmark", "link_url", "example.com/no-scheme"),
    ("blogmark", "link_url", "https:///no-host"),
    ("blogmark", "link_url", "ftp://example.com/file"),
    ("blogmark", "link_url", "https://exa mple.com/"),
    ("blogmark", "link_url", "https://example.com:port/"),
    ("blogmark", "link_url", "https://example.com/" + " " * 400 + "a" * 400),  # over 1000 once encoded
    ("blogmark", "via_url", "mailto:someone@example.com"),
    ("quotation", "source", "   "),
    ("quotation", "quotation", "q" * (MAX_TEXT_LENGTH + 1)),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind, name, value, expected", ACCEPTED, ids=lambda value: str(value)[:40])
def test_what_one_path_accepts_every_path_accepts_and_stores_alike(writer, path, kind, name, value, expected):
    accepted, said = writer(path, kind, **{name: value})
    assert accepted, said
    assert stored(kind, name) == expected


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind, name, value", REFUSED, ids=lambda value: repr(value)[:40])
def test_what_one_path_refuses_every_path_refuses(writer, path, kind, name, value):
    accepted, said = writer(path, kind, **{name: value})
    assert not accepted
    assert not POST_MODELS[kind].objects.exists()
    if path == "import":
        assert said[0][0] == "line 1" and name in said[0][1]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("typed, name", [(" Django ", "django"), ("\u212aelvin", "kelvin"), ("Web_Dev", "web_dev")])
def test_a_tag_name_is_trimmed_and_lower_cased_the_same_on_every_path(writer, path, typed, name):
    """"\u212a" is the Kelvin sign, whose lower case is an ASCII k."""
    accepted, said = writer(path, "entry", add_tags=typed) if path == "admin" else writer(path, "entry", tags=[typed])
    assert accepted, said
    assert list(Entry.objects.get().tags.values_list("tag", flat=True)) == [name]


@pytest.mark.parametrize("path", ["api", "import"])  # a browser's form cannot send a lone surrogate
@pytest.mark.parametrize("name", ["title", "body"])
def test_a_lone_surrogate_is_refused_by_every_path_that_can_carry_one(writer, path, name):
    accepted, said = writer(path, "entry", **{name: "bad \ud800 text"})
    assert not accepted
    assert not Entry.objects.exists()


def test_a_refused_link_is_named_whole_in_the_message(writer):
    url = "javascript:" + "void(0);" * 20 + "//the-end"
    for path in PATHS:
        accepted, said = writer(path, "blogmark", link_url=url)
        assert not accepted and url in str(said).replace("&quot;", '"').replace("&#x27;", "'"), (path, said)


# --- Two kinds may not share a permalink ---------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("first, second", [("entry", "blogmark"), ("blogmark", "quotation"), ("quotation", "entry")])
def test_two_kinds_cannot_share_a_permalink(writer, make, path, first, second):
    getattr(make, first)(slug="same", created=at(2024, 5, 1, 9))
    accepted, said = writer(path, second, slug="same", created="2024-05-01T18:00:00Z")
    assert not accepted
    assert f"Another {first} on this day already uses the slug “same”." in str(said) or (
        path == "import" and said == [("line 1", f"has the slug “same” of an existing {first} on the same day: two posts cannot share a permalink")])
    assert not POST_MODELS[second].objects.exists()
    accepted, said = writer(path, second, slug="same", created="2024-05-02T18:00:00Z")
    assert accepted, said  # another day is another permalink


def test_the_api_answers_a_permalink_clash_with_409(client, django_user_model, make):
    make.entry("First", slug="same", created=at(2024, 5, 1, 9))
    token = ApiToken.issue(django_user_model.objects.create_superuser("author", "a@example.com", "pw-for-tests"))
    payload = {"link_url": "https://example.com/", "link_title": "x", "slug": "same", "created": "2024-05-01T18:00:00Z"}
    response = client.post("/api/blogmarks", json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 409
    assert response.json()["errors"] == [{"field": "slug", "message": "Another entry on this day already uses the slug “same”."}]


def test_an_import_names_the_line_that_clashes_with_an_earlier_line():
    lines = [
        {"type": "entry", "slug": "same", "title": "t", "body": "b", "created": "2024-05-01T09:00:00Z"},
        {"type": "quotation", "slug": "same", "quotation": "q", "source": "s", "created": "2024-05-01T20:00:00Z"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    report = import_posts(io.BytesIO(data))
    assert report.failed
    assert report.problems == [("line 2", "has the slug “same” of the entry on line 1 on the same day: two posts cannot share a permalink")]
    assert not Entry.objects.exists()
    report = import_posts(io.BytesIO(data), skip_bad=True)
    assert not report.failed and Entry.objects.count() == 1 and not Quotation.objects.exists()


# --- A blog written through every path survives export, import into an empty database, export -----


def write_a_blog_through_every_path(writer):
    for path in PATHS:
        for kind, fields in [
            ("entry", {"title": f"Long {path}", "body": "word " * (MAX_TEXT_LENGTH // 5), "tags": ["long"]}),
            ("entry", {"title": f"Odd {path} “quotes” \u2028 and 😀", "body": "First\u2029para *em*\n\nSecond.", "tags": ["odd"]}),
            ("blogmark", {"link_url": f"https://exämple.com/{path}/a page?q=x y", "link_title": f"Spaces {path}",
                          "via_url": "https://via.example/über uns", "via_title": "via", "commentary": "Nice."}),
            ("quotation", {"quotation": "> Quoted\n\nwords", "source": f"Source {path}", "source_url": "https://example.com/q a"}),
        ]:
            accepted, said = writer(path, kind, created="2024-05-01T12:00:00Z", **fields)
            assert accepted, (path, kind, said)


def test_a_blog_written_through_every_path_round_trips_byte_for_byte(writer):
    write_a_blog_through_every_path(writer)
    first = "".join(export("ndjson")).encode()
    for model in [*POST_MODELS.values(), Tag]:
        model.objects.all().delete()
    report = import_posts(io.BytesIO(first))
    assert not report.failed, report.problems
    assert "".join(export("ndjson")).encode() == first
    assert Entry.objects.count() == 6 and Blogmark.objects.count() == 3 and Quotation.objects.count() == 3


# --- Excerpts: the first paragraph, whatever line-breaking characters it holds -------------------


class TagBalance(HTMLParser):
    VOID = {"br", "hr", "img", "meta", "link", "input"}

    def __init__(self):
        super().__init__()
        self.open = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()


@pytest.mark.parametrize("character", ["\u2028", "\u2029", "\v", "\f", "\x1c", "\x85"], ids=repr)
def test_an_excerpt_ends_with_its_first_paragraph_whatever_breaks_its_lines(client, make, character):
    body = f"First {character} line\nmore *em* and [a link](https://example.com/)\n\nSecond *paragraph*."
    entry = make.entry("Odd characters", body=body)
    assert entry.excerpt_html == entry.html.split("\n<p>Second")[0]
    assert entry.excerpt_html.endswith("</a></p>") and entry.is_truncated
    home = client.get("/").content.decode()
    assert entry.excerpt_html in home
    balance = TagBalance()
    balance.feed(home)
    assert balance.open == []


# --- Dates at the calendar's ends: every link the site makes to them answers -------------------


def site_links(client):
    """Every archive link of the archive index and every sitemap location, as site paths."""
    from xml.etree import ElementTree

    from django.conf import settings

    index = client.get("/archive/").content.decode()
    links = set(re.findall(r'href="(/\d+/[^"]*)"', index))
    locations = []
    for page in ["/sitemap.xml", "/sitemap-pages.xml", "/sitemap-posts.xml"]:  # the index, and its sections' pages
        root = ElementTree.fromstring(client.get(page).content)
        locations += [loc.text for loc in root.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    return links | {location.removeprefix(settings.LINKBLOG_BASE_URL) for location in locations}


def readers_clock_after(moment):
    """Read the site as of just after `moment` when it is still to come: a post dated at the
    calendar's far end is scheduled until then (issue 13), and readers see it from its moment on."""
    if moment <= timezone.now():
        return contextlib.nullcontext()
    return time_machine.travel(moment + timedelta(minutes=30), tick=False)


@pytest.mark.parametrize("moment, year_url, month_url", [
    (at(9999, 12, 30, hour=23), "/9999/", "/9999/Dec/"),
    (at(1, 1, 1, hour=0), "/1/", "/1/Jan/"),
], ids=["9999-12-30", "0001-01-01"])
def test_archive_and_sitemap_links_at_the_calendars_ends_answer(client, make, moment, year_url, month_url):
    entry = make.entry("At the end of time", created=moment)
    make.entry("In between", created=at(2024, 5, 1))
    with readers_clock_after(moment):
        links = site_links(client)
        assert {year_url, month_url, entry.get_absolute_url()} <= links
        for link in links:
            assert client.get(link).status_code == 200, link
        assert "At the end of time" in client.get(month_url).content.decode()


@pytest.mark.parametrize("moment, label", [(at(1, 1, 1, hour=0), "1"), (at(9999, 12, 30), "9999")])
def test_the_year_facet_of_either_end_narrows_the_search(client, make, moment, label):
    make.entry("Okapi zeta", created=moment)
    make.entry("Okapi theta", created=at(2024, 5, 1))
    with readers_clock_after(moment):
        html = client.get("/search/", {"q": "okapi"}).content.decode()
        link = re.search(rf'<a href="\?q=([^"]*)"[^>]*>{label}</a>', html).group(1)
        narrowed = client.get(f"/search/?q={link}").content.decode()
    assert "zeta" in narrowed and "theta" not in narrowed and "Ignored" not in narrowed
