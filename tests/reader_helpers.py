"""Helpers shared by the reader-facing tests (feeds, archives, discovery)."""

import re
from datetime import timedelta
from html.parser import HTMLParser

from factories import at


def text(response):
    return response.content.decode()


def post_links(response):
    """The permalinks of the posts listed on a page, in page order."""
    return re.findall(r'<a class="date u-url" href="([^"]+)">', text(response))


class HeadParser(HTMLParser):
    """The <link> and <meta> tags of a page, with their attribute values decoded as a browser would."""

    def __init__(self):
        super().__init__()
        self.links = []
        self.meta = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link":
            self.links.append(attrs)
        elif tag == "meta" and "content" in attrs:
            self.meta[attrs.get("property") or attrs.get("name")] = attrs["content"]


def head(response):
    parser = HeadParser()
    parser.feed(text(response))
    return parser


def add_posts(make, count, tags=("django",), start=None, offset=0):
    """`count` published posts cycling through the three kinds, a minute apart from `start`, each
    carrying `tags` plus a tag of its own (so that the number of tags grows with the posts)."""
    start = start or at(2024, 3, 5, hour=1)
    kinds = [make.entry, make.blogmark, make.quotation]
    posts = []
    for number in range(offset, offset + count):
        own_tags = [*tags, f"topic-{number}"]
        created = start + timedelta(minutes=number)
        posts.append(kinds[number % 3](tags=own_tags, created=created))
    return posts


def query_count(client, url, django_assert_max_num_queries, limit):
    """How many queries one GET of `url` runs (it must be at most `limit` and answer 200), as a page
    is served once its posts' listing cards are stored (the first view after a write stores them:
    tests/test_cards.py counts that one)."""
    client.get(url)
    with django_assert_max_num_queries(limit) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def assert_queries_do_not_grow(client, make, url, django_assert_max_num_queries, limit, **post_fields):
    """The page runs as many queries showing 3 posts as showing 40 (and never more than `limit`)."""
    add_posts(make, 3, **post_fields)
    few = query_count(client, url, django_assert_max_num_queries, limit)
    add_posts(make, 37, offset=3, **post_fields)
    many = query_count(client, url, django_assert_max_num_queries, limit)
    assert few == many, f"{url}: {few} queries with 3 posts, {many} with 40"
