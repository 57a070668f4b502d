"""Date archives: the archive index, a year's months, a month's and a day's posts."""

import re

import pytest
from factories import at
from reader_helpers import assert_queries_do_not_grow, post_links, text

pytestmark = pytest.mark.django_db


def month_counts(response):
    """(month link, month name, count) for each month listed on a year or archive page."""
    return re.findall(r'<li><a href="([^"]+)">(\w+)</a> <span class="count">(\d+)</span></li>', text(response))


def archive_nav(response):
    """The earlier/later links of an archive page: {"prev": href, "next": href}."""
    nav = text(response).partition('<nav class="pagination archive-nav"')[2].partition("</nav>")[0]
    return dict(re.findall(r'<a rel="(prev|next)" href="([^"]+)">', nav))


# --- The year ----------------------------------------------------------------------------------


def test_year_lists_its_months_with_published_counts(client, make):
    make.entry(created=at(2024, 1, 5))
    make.blogmark(created=at(2024, 1, 20))
    make.quotation(created=at(2024, 3, 1))
    make.entry(created=at(2024, 3, 2), is_draft=True)
    make.entry(created=at(2024, 7, 2), is_draft=True)  # a month with drafts only is not listed
    make.entry(created=at(2023, 12, 31, hour=23, minute=59))
    make.entry(created=at(2025, 1, 1, hour=0))
    response = client.get("/2024/")
    assert response.status_code == 200
    assert month_counts(response) == [("/2024/Jan/", "January", "2"), ("/2024/Mar/", "March", "1")]
    assert "3 posts in 2 months" in text(response)


def test_year_links_to_the_nearest_years_with_posts(client, make):
    make.entry(created=at(2019, 5, 1))
    make.entry(created=at(2021, 5, 1))
    make.entry(created=at(2022, 5, 1), is_draft=True)
    make.entry(created=at(2024, 5, 1))
    assert archive_nav(client.get("/2021/")) == {"prev": "/2019/", "next": "/2024/"}
    assert archive_nav(client.get("/2019/")) == {"next": "/2021/"}
    assert archive_nav(client.get("/2024/")) == {"prev": "/2021/"}


def test_a_year_with_only_drafts_is_404(client, make):
    make.entry(created=at(2022, 5, 1), is_draft=True)
    make.entry(created=at(2024, 5, 1))
    assert client.get("/2022/").status_code == 404


# --- The month ---------------------------------------------------------------------------------


def test_month_mixes_every_kind_newest_first(client, make):
    first = make.entry(created=at(2024, 3, 1, hour=0))
    second = make.quotation(created=at(2024, 3, 15))
    third = make.blogmark(created=at(2024, 3, 31, hour=23, minute=59))
    make.entry(created=at(2024, 3, 20), is_draft=True)
    make.entry(created=at(2024, 2, 29, hour=23, minute=59))
    make.entry(created=at(2024, 4, 1, hour=0))
    response = client.get("/2024/Mar/")
    assert response.status_code == 200
    assert post_links(response) == [post.get_absolute_url() for post in (third, second, first)]
    assert "3 posts." in text(response)
    assert "<h1>March" in text(response)


def test_month_groups_posts_by_day_linking_to_each_days_archive(client, make):
    make.entry(created=at(2024, 3, 1))
    make.blogmark(created=at(2024, 3, 1, hour=18))
    make.quotation(created=at(2024, 3, 15))
    response = client.get("/2024/Mar/")
    headings = re.findall(r'<h2 class="year"><a href="([^"]+)">([^<]+)</a></h2>', text(response))
    assert headings == [("/2024/Mar/15/", "Friday 15th March"), ("/2024/Mar/1/", "Friday 1st March")]
    assert client.get("/2024/Mar/15/").status_code == 200


def test_month_is_paginated(client, make):
    posts = [make.entry(created=at(2024, 3, 1 + number % 28, minute=number)) for number in range(32)]
    newest_first = sorted(posts, key=lambda post: post.created, reverse=True)
    first = client.get("/2024/Mar/")
    assert post_links(first) == [post.get_absolute_url() for post in newest_first[:30]]
    assert 'rel="next" href="?page=2"' in text(first)
    second = client.get("/2024/Mar/?page=2")
    assert post_links(second) == [post.get_absolute_url() for post in newest_first[30:]]
    assert client.get("/2024/Mar/?page=3").status_code == 404


def test_month_links_to_the_nearest_months_with_posts(client, make):
    make.entry(created=at(2023, 11, 30))
    make.entry(created=at(2024, 1, 10), is_draft=True)
    make.entry(created=at(2024, 2, 10))
    make.entry(created=at(2024, 5, 1))
    assert archive_nav(client.get("/2024/Feb/")) == {"prev": "/2023/Nov/", "next": "/2024/May/"}
    assert archive_nav(client.get("/2023/Nov/")) == {"next": "/2024/Feb/"}


# --- The day -----------------------------------------------------------------------------------


def test_day_shows_that_days_posts_of_every_kind(client, make):
    morning = make.quotation(created=at(2024, 3, 5, hour=0))
    evening = make.blogmark(created=at(2024, 3, 5, hour=23, minute=59))
    make.entry(created=at(2024, 3, 5, hour=12), is_draft=True)
    make.entry(created=at(2024, 3, 4, hour=23, minute=59))
    make.entry(created=at(2024, 3, 6, hour=0))
    response = client.get("/2024/Mar/5/")
    assert response.status_code == 200
    assert post_links(response) == [evening.get_absolute_url(), morning.get_absolute_url()]
    assert 'href="/2024/Mar/">March</a>' in text(response)
    assert 'href="/2024/">2024</a>' in text(response)


def test_day_links_to_the_previous_and_next_days_with_posts(client, make):
    make.entry(created=at(2024, 2, 27))
    make.entry(created=at(2024, 3, 1), is_draft=True)
    make.blogmark(created=at(2024, 3, 5))
    make.quotation(created=at(2024, 3, 5, hour=18))
    make.entry(created=at(2024, 3, 9, hour=7))
    response = client.get("/2024/Mar/5/")
    assert archive_nav(response) == {"prev": "/2024/Feb/27/", "next": "/2024/Mar/9/"}
    assert "27th February 2024" in text(response)
    assert archive_nav(client.get("/2024/Feb/27/")) == {"next": "/2024/Mar/5/"}
    assert archive_nav(client.get("/2024/Mar/9/")) == {"prev": "/2024/Mar/5/"}


def test_permalinks_still_work_beside_the_day_archive(client, make):
    post = make.entry("A post", created=at(2024, 3, 5))
    assert client.get(post.get_absolute_url()).status_code == 200
    assert post.get_absolute_url() in post_links(client.get("/2024/Mar/5/"))


# --- Impossible and empty periods ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/2024/Feb/30/",
        "/2023/Feb/29/",
        "/2024/Jan/0/",
        "/2024/Jan/32/",
        "/2024/Foo/",
        "/2024/Foo/1/",
        "/2024/13/",
        "/2024/Sept/",
        "/0/",
        "/0/Jan/",
        "/0/Jan/1/",
        "/99999/",
        "/99999/Jan/",
        "/99999/Jan/1/",
        "/9999/",
        "/9999/Dec/",
        "/9999/Dec/31/",
        "/99999999999999999999999/",
        "/99999999999999999999999/Jan/1/",
        "/99999999999999999999999/Jan/1/some-slug/",
        "/2024/Jan/99999999999999999999999/",
        "/2025/",
        "/2024/Jun/",
        "/2024/Mar/6/",
    ],
)
def test_impossible_and_empty_periods_are_404(client, make, url):
    make.entry(created=at(2024, 3, 5))
    response = client.get(url)
    assert response.status_code == 404
    assert "Not found" in text(response)


def test_archives_with_only_drafts_are_404(client, make):
    make.entry(created=at(2024, 3, 5), is_draft=True)
    for url in ["/2024/", "/2024/Mar/", "/2024/Mar/5/"]:
        assert client.get(url).status_code == 404, url


# --- The archive index -----------------------------------------------------------------------------


def test_archive_index_lists_years_and_months_and_is_in_the_nav(client, make):
    make.entry(created=at(2022, 6, 1))
    make.entry(created=at(2024, 3, 5))
    make.blogmark(created=at(2024, 3, 6))
    make.entry(created=at(2023, 1, 1), is_draft=True)
    response = client.get("/archive/")
    assert response.status_code == 200
    html = text(response)
    assert re.findall(r'<h2><a href="(/\d+/)">\d+</a>', html) == ["/2024/", "/2022/"]  # newest first
    assert month_counts(response) == [("/2024/Mar/", "March", "2"), ("/2022/Jun/", "June", "1")]
    assert 'href="/archive/"' in text(client.get("/"))


def test_empty_archive_index_says_so(client):
    assert "Nothing is published yet" in text(client.get("/archive/"))


# --- Speed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/archive/", "/2024/", "/2024/Mar/", "/2024/Mar/5/"])
def test_archive_queries_do_not_grow_with_posts(client, make, django_assert_max_num_queries, url):
    # 12: with the links' states, and the first page a cache generation stores also asks when the next
    # scheduled post goes live.
    assert_queries_do_not_grow(client, make, url, django_assert_max_num_queries, limit=12)
