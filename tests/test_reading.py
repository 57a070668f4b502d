"""Reading a real blog (issue 14): typography, old posts, thousands of tags, addresses people type,
permalink titles, search wording and feeds that page back."""

import importlib
import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.apps import apps
from factories import at, relist
from reader_helpers import head, text

from blogworks.text import excerpt, render_markdown, search_text
from linkblog import Blogmark, Entry, Quotation, Tag

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"


# --- Typography and old images -----------------------------------------------------------------


def test_straight_quotes_and_dashes_become_typographic_but_code_keeps_them():
    html = render_markdown('"Hello" -- it\'s the author\'s -- and --- so on `"code"`')
    assert html == "<p>“Hello” – it’s the author’s – and — so on <code>\"code\"</code></p>"


def test_http_images_are_asked_for_over_https_and_links_are_left_alone():
    html = render_markdown('![a "b" > c](http://example.com/a.png) [link](http://example.com/) <img src="HTTP://x.org/i.gif" alt="x">')
    assert 'src="https://example.com/a.png"' in html
    assert 'href="http://example.com/"' in html  # a link is the author's choice, not a blocked resource
    assert 'src="https://x.org/i.gif"' in html
    assert "http://example.com/a.png" not in html


def test_the_content_security_policy_still_allows_no_http_images(client, make):
    post = make.entry(body="![old](http://example.com/old.png)")
    response = client.get(post.get_absolute_url())
    img_src = re.search(r"img-src ([^;]+)", response["Content-Security-Policy"]).group(1).split()
    assert "http:" not in img_src and "*" not in img_src
    assert '<img alt="old" src="https://example.com/old.png">' in text(response)


def rerender_migration():
    return importlib.import_module("migrations.0007_rerender_typography")


def test_the_data_migration_rerenders_every_stored_post_and_tag_in_batches(monkeypatch):
    """Posts stored before typography (as an import writes them: bulk, old HTML) are re-rendered."""
    migration = rerender_migration()
    monkeypatch.setattr(migration, "BATCH", 7)  # many batches, so that none is skipped or repeated
    old = '<p>"Old" -- <img src="http://example.com/x.png"></p>'
    body = '"Old" -- ![](http://example.com/x.png)\n\nSecond paragraph.'
    start = at(2008, 1, 1)
    Entry.objects.bulk_create([Entry(title=f"e{n}", slug=f"e{n}", body=body, html=old, excerpt_html=old, created=start + timedelta(minutes=n)) for n in range(30)])
    Blogmark.objects.bulk_create([Blogmark(link_title=f"b{n}", slug=f"b{n}", link_url="http://example.com/", commentary=body, html=old, created=start) for n in range(20)])
    Quotation.objects.bulk_create([Quotation(source=f"q{n}", slug=f"q{n}", quotation='"Quoted"', html='<p>"Quoted"</p>', created=start) for n in range(10)])
    Tag.objects.bulk_create([Tag(tag="old", description='"Tag" -- text', description_html='<p>"Tag" -- text</p>')])

    migration.rerender(apps, None)

    new = '<p>“Old” – <img alt="" src="https://example.com/x.png"></p>'
    assert set(Entry.objects.values_list("html", "excerpt_html", "word_count")) == {(new + "\n<p>Second paragraph.</p>", new, 4)}
    assert set(Blogmark.objects.values_list("html", flat=True)) == {new + "\n<p>Second paragraph.</p>"}
    assert set(Quotation.objects.values_list("html", flat=True)) == {"<p>“Quoted”</p>"}
    assert Tag.objects.get().description_html == "<p>“Tag” – text</p>"


def test_the_data_migration_imports_its_renderer_from_blogworks_not_linkblog():
    source = open(rerender_migration().__file__).read()
    assert "from blogworks import text" in source
    assert "linkblog" not in re.sub(r'"linkblog"', "", source.split('"""')[-1].split("class Migration")[0])


# --- Search: excerpts, labels, "did you mean", feeds ---------------------------------------------


def test_search_excerpts_are_cut_between_words():
    html = "<p>" + " ".join(f"word{n}" for n in range(200)) + "</p>"
    cut = excerpt(search_text(html), ["word100"], length=100)
    assert cut.startswith("… word") and cut.endswith(" …")
    for piece in cut.strip("… ").split(" "):
        assert re.fullmatch(r"word\d+", piece) and int(piece[4:]) < 200, cut
    assert excerpt(search_text("<p>start building things now</p>"), ["start"], length=12) == "start …"


def test_search_results_name_each_kind_as_the_facet_does(client, make):
    make.blogmark("Pelican link", commentary="About pelicans.")
    make.entry("Pelican entry", body="About pelicans.")
    make.quotation("Pelicans are birds.", source="Ornithologist")
    html = text(client.get("/search/?q=pelicans"))
    labels = re.findall(r'<span class="kind">([^<]*)</span>', html)
    assert sorted(labels) == ["Blogmark", "Entry", "Quotation"]
    facet_labels = re.findall(r'<a href="\?q=pelicans\+type%3A\w+">(\w+)</a>', html)
    assert sorted(facet_labels) == ["Blogmarks", "Entries", "Quotations"]
    assert "Link<" not in html and "LINK" not in html


def test_a_search_with_no_results_suggests_a_close_tag_or_word(client, make):
    make.entry("Understanding transformers", tags=["django"])
    Tag.objects.bulk_create([Tag(tag=f"unused-{n}") for n in range(5000)])  # tags of no post are never suggested
    html = text(client.get("/search/?q=djnago"))
    assert 'Did you mean <a href="?q=django">django</a>?' in html
    assert 'Did you mean <a href="?q=transformers+tag%3Adjango">transformers tag:django</a>' in text(client.get("/search/?q=transfromers+tag:djang"))
    assert "Did you mean" not in text(client.get("/search/?q=zzzqqq"))
    assert "Did you mean" not in text(client.get("/search/?q=django"))  # found: nothing to suggest


def test_did_you_mean_costs_a_few_queries_however_big_the_blog(client, make, django_assert_max_num_queries):
    make.entry("Understanding transformers", tags=["django"])
    Tag.objects.bulk_create([Tag(tag=f"django-{n}") for n in range(3000)])  # close names, but on no post
    with django_assert_max_num_queries(25):
        html = text(client.get("/search/?q=djangoo"))
    assert 'Did you mean <a href="?q=django">django</a>?' in html


def test_drafts_tags_and_titles_are_never_suggested(client, make):
    make.entry("Secret plans", tags=["secretproject"], is_draft=True)
    make.entry("Public post", tags=["public"])
    assert "Did you mean" not in text(client.get("/search/?q=secretprojekt"))
    assert "Did you mean" not in text(client.get("/search/?q=secrett+planz"))


def test_any_search_has_a_feed_linked_from_its_page(client, make):
    make.entry("About pelicans", body="Birds.", created=at(2024, 1, 1))
    make.blogmark("Pelican link", created=at(2024, 2, 1))
    make.entry("About herons", created=at(2024, 3, 1))
    make.entry("Draft pelican", is_draft=True)
    page = head(client.get("/search/?q=pelican"))
    feeds = [link["href"] for link in page.links if link.get("type") == "application/atom+xml"]
    assert feeds == ["/search.atom?q=pelican"]
    feed = ElementTree.fromstring(client.get(feeds[0]).content)
    titles = [entry.find(f"{ATOM}title").text for entry in feed.iter(f"{ATOM}entry")]
    assert titles == ["Pelican link", "About pelicans"]  # newest first, no draft
    assert "search for pelican" in feed.find(f"{ATOM}title").text


def test_a_search_feed_of_any_query_is_valid_atom(client, make):
    make.entry("Control characters")
    for q in ["%01%02control", "%00", "", "tag:nothing", "a" * 600, "%22unclosed", "year:abc"]:
        response = client.get(f"/search.atom?q={q}")
        assert response.status_code == 200, q
        ElementTree.fromstring(response.content)


# --- Feeds page back (RFC 5005) ------------------------------------------------------------------


def feed_page(client, url):
    response = client.get(url)
    assert response.status_code == 200, url
    feed = ElementTree.fromstring(response.content)
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    return response, links, len(feed.findall(f"{ATOM}entry"))


def test_feeds_link_to_older_pages_until_the_first_post(client, make):
    start = at(2010, 1, 1)
    Entry.objects.bulk_create([Entry(title=f"e{n}", slug=f"e{n}", body="b", html="<p>b</p>", created=start + timedelta(days=n)) for n in range(65)])
    relist()
    response, links, count = feed_page(client, "/atom/everything/")
    assert count == 30 and "previous" not in links
    assert links["next"] == "http://127.0.0.1:8000/atom/everything/?page=2"
    assert response["Link"] == '<http://127.0.0.1:8000/atom/everything/?page=2>; rel="next"'
    response, links, count = feed_page(client, "/atom/everything/?page=2")
    assert count == 30 and links["previous"] == "http://127.0.0.1:8000/atom/everything/"
    assert links["next"].endswith("?page=3")
    response, links, count = feed_page(client, "/atom/everything/?page=3")
    assert count == 5 and "next" not in links and 'rel="previous"' in response["Link"]
    for url in ["/atom/everything/?page=4", "/atom/everything/?page=0", "/atom/everything/?page=abc", "/atom/everything/?page=-1"]:
        assert client.get(url).status_code == 404, url


def test_tag_and_search_feeds_page_back_keeping_their_query(client, make):
    for n in range(31):
        make.entry(f"Pelican {n}", tags=["birds"], created=at(2020, 1, 1, minute=n))
    _, links, _ = feed_page(client, "/tags/birds.atom")
    assert links["next"] == "http://127.0.0.1:8000/tags/birds.atom?page=2"
    _, links, _ = feed_page(client, "/search.atom?q=pelican")
    assert links["next"] == "http://127.0.0.1:8000/search.atom?q=pelican&page=2"
    _, _, count = feed_page(client, links["next"].removeprefix("http://127.0.0.1:8000"))
    assert count == 1


# --- Permalinks: a heading and a title a reader can tell apart -----------------------------------


def test_every_permalink_has_a_heading_and_a_distinct_title(client, make):
    entry = make.entry("A long entry")
    blogmark = make.blogmark("The link title", via_url="https://news.example/", via_title="News")
    quotation = make.quotation("The first words of a long quotation go on and on and on.", source="Steve Jobs")
    expected = {
        entry: ("A long entry", "A long entry | linkblog"),
        blogmark: ("The link title (via)", "The link title | linkblog"),
        quotation: ("Quoting Steve Jobs", "Quoting Steve Jobs: “The first words of a long quotation go…” | linkblog"),
    }
    for post, (heading, title) in expected.items():
        html = text(client.get(post.get_absolute_url()))
        h1s = re.findall(r"<h1[^>]*>(.*?)</h1>", html, re.S)
        assert len(h1s) == 1, html
        assert " ".join(re.sub(r"<[^>]+>", "", h1s[0]).split()) == heading
        assert f"<title>{title}</title>" in html


# --- Addresses people type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, canonical",
    [
        ("/tags/Django/", "/tags/django/"),
        ("/tags/Django/?page=2", "/tags/django/?page=2"),
        ("/tags/DJANGO+Python/", "/tags/django+python/"),
        ("/tags/Django.atom", "/tags/django.atom"),
        ("/2008/jan/", "/2008/Jan/"),
        ("/2008/JAN/", "/2008/Jan/"),
        ("/2008/january/", "/2008/Jan/"),
        ("/2008/01/", "/2008/Jan/"),
        ("/2008/jan/5/", "/2008/Jan/5/"),
        ("/2008/jan/5/old-post/", "/2008/Jan/5/old-post/"),
        ("/02008/", "/2008/"),
        ("/2008/Jan/05/", "/2008/Jan/5/"),
        ("/2008/01/05/", "/2008/Jan/5/"),
        ("/02008/Jan/05/old-post/", "/2008/Jan/5/old-post/"),
    ],
)
def test_addresses_people_type_redirect_to_the_canonical_ones(client, make, typed, canonical):
    make.entry("Old post", tags=["django", "python"], created=at(2008, 1, 5))
    response = client.get(typed)
    assert response.status_code == 301
    assert response["Location"] == canonical
    assert client.get(canonical.removesuffix("?page=2")).status_code == 200


def test_an_unknown_tag_in_capitals_still_ends_in_a_404(client):
    response = client.get("/tags/Nothing/", follow=True)
    assert response.redirect_chain == [("/tags/nothing/", 301)]
    assert response.status_code == 404


# --- /tags/ at the size of a real blog: 5,224 tags -------------------------------------------------

TAG_COUNT = 5224


@pytest.fixture
def twenty_years_of_tags():
    """5,224 tags: tag-0000 on 300 posts, and a long tail where most tags have one post."""
    tags = Tag.objects.bulk_create([Tag(tag=f"{'abcdefghijklmnopqrstuvwxyz'[n % 26]}tag-{n:04}") for n in range(TAG_COUNT)])
    start = at(2002, 1, 1)
    posts = Blogmark.objects.bulk_create([
        Blogmark(link_title=f"b{n}", slug=f"b{n}", link_url="https://example.com/", created=start + timedelta(days=n)) for n in range(300)
    ])
    through = Blogmark.tags.through
    links = [through(blogmark_id=post.pk, tag_id=tags[0].pk) for post in posts]  # "atag-0000": 300 posts
    links += [through(blogmark_id=posts[n % 300].pk, tag_id=tag.pk) for n, tag in enumerate(tags[1:], start=1)]
    links += [through(blogmark_id=posts[(n + 1) % 300].pk, tag_id=tag.pk) for n, tag in enumerate(tags[1:150], start=1)]
    through.objects.bulk_create(links, ignore_conflicts=True)
    relist()
    return tags


def tag_links(html):
    return re.findall(r'<a href="/tags/([^/]+)/" rel="tag">', html)


def test_the_tag_list_leads_with_the_most_used_tags_not_five_thousand(client, twenty_years_of_tags):
    response = client.get("/tags/")
    html = text(response)
    shown = tag_links(html)
    assert len(shown) == 100 and "atag-0000" in shown
    assert shown == sorted(shown)
    assert not any(name.endswith(f"{n:04}") for name in shown for n in range(150, TAG_COUNT))  # 1-post tags wait
    assert len(response.content) < 40_000
    assert 'href="?letter=d"' in html and 'href="?all=1"' in html
    assert '<form class="search-form tag-filter" action="/tags/" method="get"' in html


def test_the_tag_list_by_letter_by_filter_and_in_full_is_paginated(client, twenty_years_of_tags):
    by_letter = tag_links(text(client.get("/tags/?letter=d")))
    assert len(by_letter) == 200 and all(name.startswith("d") for name in by_letter)
    assert by_letter == sorted(by_letter)
    filtered = tag_links(text(client.get("/tags/?q=TAG-51")))
    assert filtered == sorted(f"{'abcdefghijklmnopqrstuvwxyz'[n % 26]}tag-{n:04}" for n in range(5100, 5200))
    everything = []
    for number in range(1, 28):
        everything += tag_links(text(client.get(f"/tags/?all=1&page={number}")))
    assert len(everything) == TAG_COUNT == len(set(everything))
    assert client.get("/tags/?all=1&page=28").status_code == 404
    assert "No tag contains “zzz”" in text(client.get("/tags/?q=zzz"))
