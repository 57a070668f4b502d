"""Finding more to read: combined tags, related tags, the tag cloud, random posts, the sitemap,
robots.txt, and the canonical URL and cards that search engines and link previews read."""

import re
import xml.etree.ElementTree as ElementTree
from unittest import mock

import pytest
from django.conf import settings
from factories import at
from reader_helpers import add_posts, assert_queries_do_not_grow, head, post_links, text

import linkblog

pytestmark = pytest.mark.django_db

BASE = "https://blog.example.com"


@pytest.fixture
def base_url(settings):
    settings.LINKBLOG_BASE_URL = BASE
    return BASE


# --- Combined tags -----------------------------------------------------------------------------


def test_combined_tags_show_posts_carrying_all_of_them(client, make):
    both = make.entry("Both", tags=["django", "python"], created=at(2024, 1, 1))
    three = make.blogmark("Three", tags=["python", "django", "sql"], created=at(2024, 1, 2))
    make.entry("Only django", tags=["django"])
    make.entry("Only python", tags=["python"])
    make.entry("Draft with both", tags=["django", "python"], is_draft=True)
    response = client.get("/tags/django+python/")
    assert response.status_code == 200
    assert "2 items tagged “django” and “python”" in text(response)
    assert post_links(response) == [three.get_absolute_url(), both.get_absolute_url()]
    assert "Draft" not in text(response)


def test_three_tags_can_be_combined(client, make):
    three = make.blogmark(tags=["python", "django", "sql"])
    make.entry(tags=["django", "python"])
    response = client.get("/tags/django+python+sql/")
    assert "1 item tagged “django”, “python” and “sql”" in text(response)
    assert post_links(response) == [three.get_absolute_url()]


def test_more_than_three_tags_is_a_400_page_with_a_message(client, make):
    make.entry(tags=["a", "b", "c", "d"])
    response = client.get("/tags/a+b+c+d/")
    assert response.status_code == 400
    html = text(response)
    assert "A page can combine at most 3 tags; this address names 4." in html
    assert '<a class="site-title"' in html  # the site's own page, not a traceback


def test_an_unknown_tag_in_a_combination_is_404(client, make):
    make.entry(tags=["django"])
    assert client.get("/tags/django+nope/").status_code == 404
    assert client.get("/tags/nope+django/").status_code == 404


@pytest.mark.parametrize("url", ["/tags/django+/", "/tags/+django/", "/tags/django++python/", "/tags/a b/"])
def test_malformed_combinations_are_404(client, make, url):
    make.entry(tags=["django", "python"])
    assert client.get(url).status_code == 404


def test_combination_order_does_not_matter_and_the_canonical_url_is_sorted(client, make, base_url):
    make.entry(tags=["django", "python"])
    forward, backward = client.get("/tags/django+python/"), client.get("/tags/python+django/")
    assert post_links(forward) == post_links(backward)
    assert canonical(forward) == canonical(backward) == BASE + "/tags/django+python/"


def test_a_repeated_tag_counts_once(client, make):
    post = make.entry(tags=["django"])
    response = client.get("/tags/django+django/")
    assert response.status_code == 200
    assert "1 item tagged “django”</h1>" in text(response)
    assert post_links(response) == [post.get_absolute_url()]


def test_combined_tag_pages_paginate(client, make):
    add_posts(make, 32, tags=("django", "python"))
    first = client.get("/tags/django+python/")
    assert len(post_links(first)) == 30
    assert len(post_links(client.get("/tags/django+python/?page=2"))) == 2


# --- Related tags ------------------------------------------------------------------------------


def related(response):
    """(tag, shared count) for each related tag, in order."""
    section = text(response).partition('<aside class="related-tags">')[2].partition("</aside>")[0]
    return re.findall(r'rel="tag">([^<]+)</a> <span class="count">(\d+)</span>', section)


def test_related_tags_are_the_ones_most_often_found_together(client, make):
    make.entry(tags=["django", "python", "orm"])
    make.blogmark(tags=["django", "python"])
    make.quotation(tags=["django", "python", "testing"])
    make.entry(tags=["django", "orm"])
    make.entry(tags=["python", "numpy"])  # not with django
    make.entry(tags=["django", "secret"], is_draft=True)  # drafts do not count
    assert related(client.get("/tags/django/")) == [("python", "3"), ("orm", "2"), ("testing", "1")]


def test_related_tags_of_a_combination_exclude_its_own_tags(client, make):
    make.entry(tags=["django", "python", "orm"])
    make.entry(tags=["django", "python", "orm", "sql"])
    make.entry(tags=["django", "sql"])
    response = client.get("/tags/django+python/")
    assert related(response) == [("orm", "2"), ("sql", "1")]
    # Each related tag offers to narrow the combination further.
    assert 'class="combine" href="/tags/django+python+orm/"' in text(response)


def test_related_tags_count_every_post_of_the_tag_not_only_the_newest(client, make):
    make.entry(tags=["django", "python"], created=at(2020, 1, 1))
    for day in range(1, 4):
        make.entry(tags=["django", "orm"], created=at(2024, 1, day))
    with mock.patch("linkblog.RELATED_SAMPLE", 2):  # a combination still counts its newest posts
        assert related(client.get("/tags/django/")) == [("orm", "3"), ("python", "1")]
        assert related(client.get("/tags/django+orm/")) == []


def test_related_tags_of_a_combination_come_from_its_own_newest_posts_however_rare(client, make):
    """A combination's related tags are counted on the newest posts carrying all its tags, found
    however far back they lie among either tag's own posts."""
    for day in range(1, 4):
        make.entry(tags=["django", "python", "orm"], created=at(2020, 1, day))
    make.entry(tags=["django", "python", "sql"], created=at(2019, 1, 1))  # older than the two counted
    for day in range(1, 11):
        make.entry(tags=["django"], created=at(2024, 1, day))
        make.entry(tags=["python"], created=at(2024, 2, day))
        make.entry(tags=["python", "numpy"], created=at(2024, 3, day))
    with mock.patch("linkblog.RELATED_SAMPLE", 2):
        assert related(client.get("/tags/django+python/")) == [("orm", "2")]
    assert related(client.get("/tags/python+django/")) == [("orm", "3"), ("sql", "1")]


def test_a_scheduled_posts_tags_are_not_related_until_its_moment(client, make, time_machine):
    time_machine.move_to(at(2024, 5, 7, 9), tick=False)
    make.entry(tags=["django", "python"], created=at(2024, 5, 1))
    make.entry(tags=["django", "launch"], created=at(2024, 5, 8))
    assert related(client.get("/tags/django/")) == [("python", "1")]
    time_machine.move_to(at(2024, 5, 8, 13), tick=False)  # an hour after it
    assert related(client.get("/tags/django/")) == [("launch", "1"), ("python", "1")]


def test_while_a_post_is_scheduled_related_tags_still_count_every_published_post(client, make, time_machine):
    time_machine.move_to(at(2024, 5, 7, 9), tick=False)
    make.entry(tags=["django", "python"], created=at(2020, 1, 1))
    for day in range(1, 4):
        make.entry(tags=["django", "orm"], created=at(2024, 1, day))
    make.entry(tags=["django", "launch", "orm"], created=at(2024, 5, 8))  # scheduled
    with mock.patch("linkblog.RELATED_SAMPLE", 2):  # not a sample of the newest posts
        assert related(client.get("/tags/django/")) == [("orm", "3"), ("python", "1")]
        time_machine.move_to(at(2024, 5, 8, 13), tick=False)
        assert related(client.get("/tags/django/")) == [("orm", "4"), ("launch", "1"), ("python", "1")]


def test_scheduled_posts_cannot_push_a_tag_into_the_first_ten(client, make, time_machine):
    time_machine.move_to(at(2024, 5, 7, 9), tick=False)
    for number in range(10):
        make.entry(tags=["hub", f"spoke-{number:02}"]), make.entry(tags=["hub", f"spoke-{number:02}"])
    make.entry(tags=["hub", "spoke-10"])
    for hour in range(3):  # the pair tallies count spoke-10 four times, readers see it once
        make.entry(tags=["hub", "spoke-10"], created=at(2024, 5, 8, hour))
    assert [name for name, _ in related(client.get("/tags/hub/"))] == [f"spoke-{number:02}" for number in range(10)]


def test_related_tags_are_at_most_ten(client, make):
    for number in range(12):
        make.entry(tags=["hub", f"spoke-{number:02}"] + [f"spoke-{n:02}" for n in range(number)])
    names = [name for name, _ in related(client.get("/tags/hub/"))]
    assert names == [f"spoke-{number:02}" for number in range(10)]


def test_a_three_tag_page_offers_no_further_combination(client, make):
    make.entry(tags=["a", "b", "c", "d"])
    response = client.get("/tags/a+b+c/")
    assert related(response) == [("d", "1")]
    assert 'class="combine"' not in text(response)


# --- The tag cloud -----------------------------------------------------------------------------


def test_tag_cloud_sizes_tags_by_count_with_classes(client, make):
    for _ in range(20):
        make.entry(tags=["big"])
    for _ in range(4):
        make.entry(tags=["middle"])
    make.entry(tags=["small"])
    make.entry(tags=["hidden"], is_draft=True)
    html = text(client.get("/tags/"))
    sizes = dict(re.findall(r'<li class="size-(\d)"><a href="/tags/([^/]+)/"', html))
    assert sizes == {"5": "big", "3": "middle", "1": "small"}
    assert "style=" not in html  # sizes come from the stylesheet (a CSP forbids inline styles)


def test_tag_cloud_with_one_count_draws_every_tag_alike(client, make):
    make.entry(tags=["one", "two"])
    html = text(client.get("/tags/"))
    assert re.findall(r'<li class="size-(\d)">', html) == ["1", "1"]


# --- Random --------------------------------------------------------------------------------------


def test_random_redirects_to_a_published_post_with_the_tag(client, make):
    posts = [make.entry(tags=["django"]), make.blogmark(tags=["django"]), make.quotation(tags=["django"])]
    make.entry(tags=["django"], is_draft=True)
    make.entry(tags=["python"])
    seen = set()
    for _ in range(60):
        response = client.get("/random/django/")
        assert response.status_code == 302
        assert "no-cache" in response["Cache-Control"]
        seen.add(response["Location"])
    # Every published post is reachable, and nothing else is (missing one in 60 tries: < 1e-9).
    assert seen == {post.get_absolute_url() for post in posts}


def test_random_works_for_combined_tags(client, make):
    both = make.entry(tags=["django", "python"])
    make.entry(tags=["django"])
    for _ in range(10):
        assert client.get("/random/django+python/")["Location"] == both.get_absolute_url()


def test_random_with_a_tag_in_capitals_redirects_to_its_lower_case_address(client, make):
    make.entry(tags=["django"])
    response = client.get("/random/Django/")
    assert (response.status_code, response["Location"]) == (301, "/random/django/")


def test_random_without_a_published_post_is_404(client, make):
    make.entry(tags=["drafty"], is_draft=True)
    assert client.get("/random/drafty/").status_code == 404
    assert client.get("/random/unknown/").status_code == 404
    assert client.get("/random/a+b+c+d/").status_code == 400


def test_tag_page_links_to_a_random_post(client, make):
    make.entry(tags=["django"])
    assert 'href="/random/django/"' in text(client.get("/tags/django/"))


# --- Sitemap and robots.txt -------------------------------------------------------------------------


SITEMAP_NAMESPACE = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}


def sitemap_locations(client, url, element):
    """The <loc>s of the sitemap (or index) at `url`, under its <url>s (or <sitemap>s)."""
    response = client.get(url)
    assert response.status_code == 200, url
    assert response["Content-Type"].startswith("application/xml")
    return [loc.text for loc in ElementTree.fromstring(response.content).findall(f"s:{element}/s:loc", SITEMAP_NAMESPACE)]


def sitemap_pages(client):
    """The sitemap pages /sitemap.xml (an index) lists, as site paths with their query."""
    return [url.removeprefix(settings.LINKBLOG_BASE_URL) for url in sitemap_locations(client, "/sitemap.xml", "sitemap")]


def sitemap_urls(client):
    """Every URL of every page the sitemap index lists, in order."""
    return [url for page in sitemap_pages(client) for url in sitemap_locations(client, page, "url")]


def test_sitemap_lists_permalinks_tag_pages_and_archives_on_the_base_url(client, make, base_url):
    entry = make.entry(tags=["django"], created=at(2024, 3, 5))
    link = make.blogmark(tags=["python"], created=at(2023, 7, 1))
    quote = make.quotation(created=at(2023, 7, 2))
    urls = sitemap_urls(client)
    for post in (entry, link, quote):
        assert BASE + post.get_absolute_url() in urls
    for path in ["/", "/tags/", "/archive/", "/tags/django/", "/tags/python/", "/2024/", "/2024/Mar/", "/2023/", "/2023/Jul/"]:
        assert BASE + path in urls, path
    assert len(urls) == len(set(urls))
    assert all(url.startswith(BASE + "/") for url in urls)


def test_sitemap_never_lists_drafts_or_their_tags_and_months(client, make, base_url):
    make.entry(created=at(2024, 3, 5))
    draft = make.entry("Secret", tags=["secret"], created=at(2022, 1, 1), is_draft=True)
    urls = sitemap_urls(client)
    assert BASE + draft.get_absolute_url() not in urls
    assert BASE + "/tags/secret/" not in urls
    assert BASE + "/2022/" not in urls and BASE + "/2022/Jan/" not in urls


def test_sitemap_follows_a_base_url_with_a_path(client, make, settings):
    settings.LINKBLOG_BASE_URL = "https://example.com/blog"
    post = make.entry()
    assert sitemap_locations(client, "/sitemap.xml", "sitemap")[0] == "https://example.com/blog/sitemap-pages.xml"
    assert "https://example.com/blog" + post.get_absolute_url() in sitemap_urls(client)


def test_the_sitemap_is_an_index_of_pages_that_list_every_published_post_once(client, make, monkeypatch, base_url):
    """A blog outgrows one sitemap (50,000 URLs at most, and a list of 100,000 posts took 4.6 s): the
    index names each page of each section, and the pages together list every published post once."""
    monkeypatch.setattr(linkblog.SiteSitemap, "limit", 4)
    posts = add_posts(make, 10, tags=())
    make.entry("A draft", created=at(2024, 3, 5, hour=2), is_draft=True)
    pages = sitemap_pages(client)
    assert [page for page in pages if page.startswith("/sitemap-posts.xml")] == [
        "/sitemap-posts.xml", "/sitemap-posts.xml?p=2", "/sitemap-posts.xml?p=3"]
    listed = [url.removeprefix(BASE) for url in sitemap_urls(client) if url.count("/") > 6]  # /2024/Mar/5/slug/
    assert listed == [post.get_absolute_url() for post in reversed(posts)]  # newest first, drafts never
    posts_page = client.get("/sitemap-posts.xml?p=2").content.decode()
    assert posts_page.count("<lastmod>2024-03-05</lastmod>") == 4
    for missing in ["/sitemap-posts.xml?p=4", "/sitemap-posts.xml?p=abc", "/sitemap-secrets.xml"]:
        assert client.get(missing).status_code == 404, missing


def test_robots_txt_points_to_the_sitemap(client, base_url):
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    lines = response.content.decode().splitlines()
    assert "Sitemap: https://blog.example.com/sitemap.xml" in lines
    assert "User-agent: *" in lines
    assert "Disallow: /admin/" in lines


# --- Canonical URLs and cards ------------------------------------------------------------------------


def canonical(response):
    return [link["href"] for link in head(response).links if link.get("rel") == "canonical"][0]


def test_permalink_carries_canonical_url_and_cards(client, make, base_url):
    post = make.entry("Fish & chips", body="The *best* fish & chips in <town>.\n\nSecond paragraph.", tags=["food"])
    response = client.get(post.get_absolute_url())
    meta = head(response).meta
    assert canonical(response) == BASE + post.get_absolute_url()
    assert meta["og:url"] == BASE + post.get_absolute_url()
    assert meta["og:type"] == "article"
    assert meta["og:title"] == meta["twitter:title"] == "Fish & chips"
    assert meta["twitter:card"] == "summary"
    description = "The best fish & chips in . Second paragraph."
    assert meta["description"] == meta["og:description"] == meta["twitter:description"] == description


def test_descriptions_are_plain_text_without_markup_or_entities(client, make):
    body = 'Use `<b>` & **bold** with [a link](https://example.com/?a=1&b=2) &mdash; "quoted" it\'s &amp; done'
    post = make.entry(body=body)
    description = head(client.get(post.get_absolute_url())).meta["description"]
    assert description == "Use <b> & bold with a link — “quoted” it’s & done"  # typographic quotes
    # The HTML attribute itself is escaped exactly once.
    assert 'content="Use &lt;b&gt; &amp; bold with a link — “quoted” it’s &amp; done"' in text(
        client.get(post.get_absolute_url())
    )


def test_long_descriptions_are_trimmed_on_a_word_boundary(client, make):
    words = " ".join(f"word{number}" for number in range(100))
    post = make.entry(body=words)
    description = head(client.get(post.get_absolute_url())).meta["description"]
    assert len(description) <= 200
    assert description.endswith("…")
    assert words.startswith(description[:-1])
    assert description[:-1].split(" ")[-1] in words.split(" ")  # no word cut in half


def test_blogmark_and_quotation_cards(client, make):
    link = make.blogmark("A great article", commentary="")
    quote = make.quotation("Simple is *better*.", source="Tim")
    link_meta = head(client.get(link.get_absolute_url())).meta
    assert link_meta["og:title"] == "A great article"
    assert link_meta["og:description"] == "A great article"  # nothing else to describe it
    quote_meta = head(client.get(quote.get_absolute_url())).meta
    assert quote_meta["og:description"] == "Simple is better."


def test_tag_page_carries_canonical_url_and_cards(client, make, base_url):
    make.tag("django", description="The **Django** web framework & friends.")
    add_posts(make, 31, tags=("django",))
    response = client.get("/tags/django/")
    meta = head(response).meta
    assert canonical(response) == BASE + "/tags/django/"
    assert meta["og:type"] == "website"
    assert meta["og:title"] == "Posts tagged django"
    assert meta["og:description"] == "The Django web framework & friends."
    assert canonical(client.get("/tags/django/?page=2")) == BASE + "/tags/django/?page=2"


# --- Speed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/tags/django/", "/tags/django+python/", "/tags/django+python+topic-1/", "/tags/"])
def test_page_queries_do_not_grow_with_posts(client, make, django_assert_max_num_queries, url):
    # 12: the links' states, and the first page a cache generation stores also asks when the next
    # scheduled post goes live.
    assert_queries_do_not_grow(
        client, make, url, django_assert_max_num_queries, limit=12, tags=("django", "python")
    )


# --- In a browser --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_reader_finds_posts_through_the_cloud_related_tags_and_archives(page, live_server, make, artifacts):
    for number in range(12):
        make.entry(f"Django and Python {number}", tags=["django", "python"], created=at(2024, 3, 1 + number))
    for number in range(3):
        make.blogmark(f"Django only {number}", tags=["django"], created=at(2024, 2, 10 + number))
    make.quotation(source="Someone", tags=["rust"], created=at(2023, 12, 24))

    page.goto(f"{live_server.url}/tags/")
    font_size = "el => parseFloat(getComputedStyle(el).fontSize)"
    biggest = page.locator("li.size-5 a").first.evaluate(font_size)
    smallest = page.locator("li.size-1 a").evaluate(font_size)
    assert biggest > 1.5 * smallest
    page.screenshot(path=str(artifacts / "tag-cloud.png"), full_page=True)

    page.get_by_role("link", name="django", exact=True).click()
    page.wait_for_url(f"{live_server.url}/tags/django/")
    assert page.locator(".related-tags li").all_inner_texts() == ["python 12 +"]
    page.locator(".related-tags a.combine").click()
    page.wait_for_url(f"{live_server.url}/tags/django+python/")
    assert page.locator("h1").inner_text() == "12 items tagged “django” and “python”"
    assert page.locator('link[rel="alternate"]').get_attribute("href") == "/tags/django+python.atom"
    page.screenshot(path=str(artifacts / "combined-tags.png"), full_page=True)

    page.get_by_role("link", name="Archive").click()
    page.get_by_role("link", name="2024").click()
    page.get_by_role("link", name="March").click()
    page.wait_for_url(f"{live_server.url}/2024/Mar/")
    assert page.locator("article.post").count() == 12
    page.get_by_role("link", name="Friday 1st March").click()
    page.wait_for_url(f"{live_server.url}/2024/Mar/1/")
    assert page.locator("article.post h3").all_inner_texts() == ["Django and Python 0"]
    page.get_by_role("link", name="← 12th February 2024").click()
    page.wait_for_url(f"{live_server.url}/2024/Feb/12/")
    assert page.locator("article.post").count() == 1
    page.screenshot(path=str(artifacts / "day-archive.png"), full_page=True)
