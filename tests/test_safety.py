"""Markdown is sanitized: nothing an author (or an import) writes can run script on a page."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from blogworks.text import render_markdown
from linkblog import Blogmark, Entry, Quotation, Tag

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent

HOSTILE_MARKDOWN = [
    "<script>alert('x')</script>",
    '<img src="x" onerror="alert(1)">',
    "[click](javascript:alert(1))",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    "<iframe src='https://evil.example/'></iframe>",
    '<svg onload="alert(1)"><circle/></svg>',
    '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
    '<p style="background:url(javascript:alert(1))" onclick="alert(1)">styled</p>',
    '<form action="https://evil.example/"><input name="x"></form>',
    "![img](javascript:alert(1))",
    '<a href="&#106;avascript:alert(1)">entity</a>',
]


def assert_harmless(html):
    lowered = re.sub(r'<form class="[^"]*search[^"]*" action="/search/"', "", html.lower())  # our own search boxes
    assert "<script" not in lowered
    assert "javascript:" not in lowered
    assert "data:text/html" not in lowered
    assert "<iframe" not in lowered and "<form" not in lowered and "<svg" not in lowered
    assert not re.search(r"\son[a-z]+\s*=", lowered), html
    assert "style=" not in lowered


@pytest.mark.parametrize("markdown", HOSTILE_MARKDOWN)
def test_hostile_markdown_never_reaches_a_page(client, make, markdown):
    make.tag("t", description=markdown)
    entries = [
        make.entry("Hostile entry", body=markdown, tags=["t"]),
        make.blogmark("Hostile link", commentary=markdown, tags=["t"]),
        make.quotation(markdown, source="Hostile source", tags=["t"]),
    ]
    pages = ["/", "/tags/t/", "/search/?q=hostile"] + [post.get_absolute_url() for post in entries]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200
        assert_harmless(response.content.decode())


def test_links_the_author_wrote_keep_working():
    html = render_markdown("See [Django](https://www.djangoproject.com/) or <mailto:me@example.com>.")
    assert '<a href="https://www.djangoproject.com/" rel="noopener">Django</a>' in html
    assert 'href="mailto:me@example.com"' in html


def test_ordinary_markdown_survives_sanitizing():
    html = render_markdown("# Title\n\n*em* **strong** `code`\n\n> quoted\n\n- one\n- two\n\n```\nblock\n```")
    for fragment in ["<h1>Title</h1>", "<em>em</em>", "<strong>strong</strong>", "<code>code</code>",
                     "<blockquote>", "<li>one</li>", "<pre><code>block\n</code></pre>"]:
        assert fragment in html


@pytest.mark.parametrize("field", ["link_url", "via_url"])
def test_blogmark_urls_must_be_http(field):
    fields = {"link_url": "https://example.com/", "link_title": "x", field: "javascript:alert(1)"}
    blogmark = Blogmark(**fields)
    with pytest.raises(ValidationError) as error:
        blogmark.full_clean()
    assert field in error.value.message_dict


def test_quotation_source_url_must_be_http():
    quotation = Quotation(quotation="q", source="s", source_url="javascript:alert(1)")
    with pytest.raises(ValidationError) as error:
        quotation.full_clean()
    assert "source_url" in error.value.message_dict


def test_a_javascript_url_that_slipped_into_the_database_is_not_linked(client, make):
    # Bulk writes skip validation; the page must still not link to it.
    make.blogmark("Sneaky", tags=["t"])
    Blogmark.objects.update(link_url="javascript:alert(1)", via_url="javascript:alert(2)")
    Quotation.objects.bulk_create([Quotation(quotation="q", source="src", slug="src", source_url="javascript:alert(3)")])
    for url in ["/", "/tags/t/"]:
        assert "javascript:" not in client.get(url).content.decode().lower()


def test_titles_and_sources_are_escaped(client, make):
    make.entry("<b>bold</b> & <script>x</script>", tags=["t"])
    make.blogmark('"><script>alert(1)</script>', tags=["t"], via_url="https://example.com/", via_title='"><script>')
    make.quotation(source="<script>alert(2)</script>", tags=["t"])
    html = client.get("/tags/t/").content.decode()
    assert "<script>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;" in html


# --- Slugs ---------------------------------------------------------------------------------------


def test_slug_is_made_from_the_title_and_kept_unique_per_day(make):
    from factories import at

    first = make.entry("Hello World", created=at(2024, 1, 1, 9))
    second = make.entry("Hello world!", created=at(2024, 1, 1, 18))
    link = make.blogmark("Hello, world", created=at(2024, 1, 1, 20))
    other_day = make.entry("Hello World", created=at(2024, 1, 2))
    assert [first.slug, second.slug, link.slug, other_day.slug] == [
        "hello-world", "hello-world-2", "hello-world-3", "hello-world"
    ]


def test_a_title_without_letters_still_gets_a_slug(make):
    assert make.entry("!!!").slug == "entry"
    assert make.quotation(source="—").slug == "quotation"


def test_a_chosen_slug_that_clashes_on_the_same_day_is_refused(make):
    from factories import at

    make.entry("First", slug="taken", created=at(2024, 5, 5, 8))
    clash = Entry(title="Second", body="b", slug="taken", created=at(2024, 5, 5, 22))
    with pytest.raises(ValidationError) as error:
        clash.full_clean()
    assert "already uses the slug" in error.value.message_dict["slug"][0]
    Entry(title="Other day", body="b", slug="taken", created=at(2024, 5, 6)).full_clean()
    with pytest.raises(ValidationError) as error:  # another kind: the same permalink all the same
        Blogmark(link_url="https://example.com/", link_title="x", slug="taken", created=at(2024, 5, 5)).full_clean()
    assert error.value.message_dict["slug"] == ["Another entry on this day already uses the slug “taken”."]


def test_long_titles_make_slugs_that_fit(make):
    entry = make.entry("word " * 50)  # 250 characters: the title fits, the slug must be cut
    assert len(entry.slug) <= 64


@pytest.mark.parametrize(
    "post",
    [
        lambda: Entry(title="No slug", body="b"),
        lambda: Blogmark(link_url="https://example.com/", link_title="No slug"),
        lambda: Quotation(quotation="q", source="No slug"),
    ],
    ids=["entry", "blogmark", "quotation"],
)
def test_a_post_without_a_slug_cannot_be_stored_even_in_bulk(post):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        type(post()).objects.bulk_create([post()])


def test_tags_are_stored_lower_case(make):
    assert Tag.objects.create(tag="Django").tag == "django"


# --- Migrations ------------------------------------------------------------------------------------


def test_migrations_match_the_models():
    result = subprocess.run(
        [sys.executable, "-m", "nanodjango", "manage", "linkblog.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
