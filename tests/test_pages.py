"""The pages a reader sees: home, tag pages, the tag list and permalinks."""

import re

import pytest
from factories import at

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def post_titles(response):
    """The visible titles of the listed posts, in page order."""
    html = text(response)
    return re.findall(r'<article class="post (?:entry|blogmark|quotation) h-entry">.*?(?:<h3 class="p-name"><a [^>]*>|<strong><a [^>]*>|<p class="cite p-name">&mdash; (?:<a [^>]*>)?)([^<]+)<', html, re.S)


# --- Tag pages -------------------------------------------------------------------------------


def test_tag_page_counts_items_of_every_kind(client, make):
    make.entry("An entry", tags=["django"])
    make.blogmark("A link", tags=["django"])
    make.quotation(source="Someone wise", tags=["django"])
    make.entry("Elsewhere", tags=["python"])
    response = client.get("/tags/django/")
    assert response.status_code == 200
    assert "3 items tagged “django”" in text(response)


def test_tag_page_uses_the_singular_for_one_item(client, make):
    make.blogmark("Only one", tags=["solo"])
    assert "1 item tagged “solo”" in text(client.get("/tags/solo/"))


def test_tag_page_of_a_tag_without_published_posts_is_404(client, make):
    make.tag("empty", description="Nobody should read this")
    make.entry("Secret", tags=["empty"], is_draft=True)
    response = client.get("/tags/empty/")
    assert response.status_code == 404
    assert "Secret" not in text(response) and "Nobody should read this" not in text(response)


def test_tag_page_renders_the_description_as_markdown(client, make):
    make.tag("django", description="The *Django* web framework, see [the site](https://www.djangoproject.com/).")
    make.entry(tags=["django"])
    html = text(client.get("/tags/django/"))
    assert "The <em>Django</em> web framework" in html
    assert '<a href="https://www.djangoproject.com/"' in html


def test_tag_page_mixes_kinds_newest_first_under_year_headings(client, make):
    make.blogmark("Link 2023", tags=["t"], created=at(2023, 6, 1))
    make.entry("Entry 2024", tags=["t"], created=at(2024, 3, 1))
    make.quotation(source="Quote 2024", tags=["t"], created=at(2024, 9, 1))
    make.entry("Entry 2022", tags=["t"], created=at(2022, 1, 5))
    response = client.get("/tags/t/")
    assert post_titles(response) == ["Quote 2024", "Entry 2024", "Link 2023", "Entry 2022"]
    assert re.findall(r'<h2 class="year">(\d+)</h2>', text(response)) == ["2024", "2023", "2022"]


def test_tag_page_shows_thirty_per_page_with_newer_and_older_links(client, make):
    for number in range(65):
        make.entry(f"Post {number:02}", tags=["many"], created=at(2020, 1, 1, minute=number))
    first = client.get("/tags/many/")
    assert len(post_titles(first)) == 30
    assert post_titles(first)[0] == "Post 64"
    assert 'rel="next" href="?page=2"' in text(first)
    assert 'rel="prev"' not in text(first)

    second = client.get("/tags/many/?page=2")
    assert post_titles(second)[0] == "Post 34"
    assert 'rel="prev" href="?page=1"' in text(second)
    assert 'rel="next" href="?page=3"' in text(second)

    last = client.get("/tags/many/?page=3")
    assert post_titles(last) == ["Post 04", "Post 03", "Post 02", "Post 01", "Post 00"]
    assert 'rel="next"' not in text(last)


def test_every_page_of_home_a_tag_and_two_tags_read_in_turn_lists_each_post_once_newest_first(client, make, settings):
    """Pages past the middle are read from the oldest end (blogworks/listing.py ListingPaginator):
    paged through, every listing is still the whole of it in order, posts of one moment included,
    and drafts and scheduled posts nowhere."""
    settings.LINKBLOG_PAGE_SIZE = 4
    settings.LINKBLOG_PAGE_CACHE = False
    expected = []
    for number in range(23):
        moment = at(2020, 1, 1 + number // 3)  # three posts to a moment: ties across kinds and ids
        kind = ("entry", "blogmark", "quotation")[number % 3]
        title = f"Post {number:02}"
        tags = ["many", "pair"] if number % 2 else ["many"]
        post = (make.entry(title, tags=tags, created=moment) if kind == "entry"
                else make.blogmark(title, tags=tags, created=moment) if kind == "blogmark"
                else make.quotation(source=title, tags=tags, created=moment))
        expected.append((moment, post.pk, kind, title, number % 2 == 1))
    make.entry("A draft", tags=["many", "pair"], is_draft=True, created=at(2020, 1, 3))
    make.blogmark("Scheduled", tags=["many", "pair"], created=at(2099, 1, 1))
    newest_first = sorted(expected, reverse=True)
    for url, wanted in [("/", newest_first), ("/tags/many/", newest_first),
                        ("/tags/many+pair/", [post for post in newest_first if post[4]])]:
        seen, page = [], 1
        while (response := client.get(url, {"page": page})).status_code == 200:
            seen += post_titles(response)
            page += 1
        assert seen == [title for _, _, _, title, _ in wanted], url
        assert page - 1 == -(-len(wanted) // 4)


@pytest.mark.parametrize("page", ["0", "3", "-1", "abc", "1.5", ""])
def test_tag_page_answers_404_for_pages_that_do_not_exist(client, make, page):
    for number in range(31):
        make.entry(tags=["two-pages"])
    assert client.get(f"/tags/two-pages/?page={page}").status_code == 404


def test_unknown_tag_is_404(client, make):
    make.entry(tags=["known"])
    response = client.get("/tags/unknown/")
    assert response.status_code == 404
    assert "Not found" in text(response)


def test_drafts_are_left_out_of_tag_pages_and_counts(client, make):
    make.entry("Published", tags=["t"])
    make.entry("Draft entry", tags=["t"], is_draft=True)
    make.blogmark("Draft link", tags=["t"], is_draft=True)
    make.quotation(source="Draft source", tags=["t"], is_draft=True)
    html = text(client.get("/tags/t/"))
    assert "1 item tagged “t”" in html
    assert "Draft" not in html


# --- Home and the tag list ---------------------------------------------------------------------


def test_empty_home_page_says_how_to_start(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "Nothing is published yet" in text(response)
    assert 'href="/admin/"' in text(response)


def test_home_page_lists_every_kind_newest_first_without_drafts(client, make):
    make.entry("Old entry", created=at(2021, 1, 1))
    make.blogmark("New link", created=at(2024, 1, 1))
    make.quotation(source="Middle quote", created=at(2022, 1, 1))
    make.entry("Draft", created=at(2025, 1, 1), is_draft=True)
    response = client.get("/")
    assert post_titles(response) == ["New link", "Middle quote", "Old entry"]


def test_home_page_paginates(client, make):
    for number in range(31):
        make.blogmark(f"Link {number}", created=at(2020, 1, 1, minute=number))
    assert len(post_titles(client.get("/"))) == 30
    assert post_titles(client.get("/?page=2")) == ["Link 0"]
    # One heading names each page, for screen readers and outlines (the site title is on screen already).
    assert re.findall(r"<h1[^>]*>(.*?)</h1>", client.get("/?page=2").content.decode()) == ["linkblog: page 2"]
    assert client.get("/?page=3").status_code == 404


def test_tag_list_shows_published_counts_and_hides_draft_only_tags(client, make):
    make.entry(tags=["django", "python"])
    make.blogmark(tags=["django"])
    make.quotation(tags=["django"], is_draft=True)
    make.entry(tags=["secret"], is_draft=True)
    html = text(client.get("/tags/"))
    assert re.search(r'>django</a> <span class="count">2</span>', html)
    assert re.search(r'>python</a> <span class="count">1</span>', html)
    assert "secret" not in html


# --- How each kind shows in a listing ------------------------------------------------------------


def test_entry_listing_shows_title_first_paragraph_and_word_count(client, make):
    entry = make.entry(
        "A long post",
        body="The first paragraph.\n\nThe second paragraph has seven more words here.",
        tags=["t"],
    )
    html = text(client.get("/tags/t/"))
    assert f'<h3 class="p-name"><a href="{entry.get_absolute_url()}">A long post</a></h3>' in html
    assert "<p>The first paragraph.</p>" in html
    assert "second paragraph" not in html
    assert f'<a href="{entry.get_absolute_url()}">[... 11 words]</a>' in html


def test_entry_of_one_paragraph_has_no_read_more(client, make):
    make.entry("Short", body="Just this.", tags=["t"])
    html = text(client.get("/tags/t/"))
    assert "<p>Just this.</p>" in html
    assert "[..." not in html


def test_entry_whose_first_block_is_code_shows_the_whole_block(client, make):
    make.entry("Code", body="```\nline one\n\nline two\n```\n\nAfter.", tags=["t"])
    html = text(client.get("/tags/t/"))
    assert "line one\n\nline two" in html
    assert "After." not in html


def test_blogmark_listing_shows_bold_link_via_and_commentary(client, make):
    make.blogmark(
        "nanodjango",
        link_url="https://github.com/radiac/nanodjango",
        via_url="https://news.ycombinator.com/item?id=1",
        via_title="Hacker News",
        commentary="Django in *one* file.",
        tags=["t"],
    )
    html = text(client.get("/tags/t/"))
    assert '<strong><a href="https://github.com/radiac/nanodjango">nanodjango</a></strong>' in html
    assert '(<a class="via" href="https://news.ycombinator.com/item?id=1" title="Hacker News">via</a>)' in html
    assert "Django in <em>one</em> file." in html


def test_blogmark_without_via_has_no_via_link(client, make):
    make.blogmark("Plain", tags=["t"])
    assert "(via)" not in text(client.get("/tags/t/")) and ">via</a>" not in text(client.get("/tags/t/"))


def test_quotation_listing_shows_blockquote_and_source(client, make):
    make.quotation("Code is **read** more than written.", source="Guido", source_url="https://python.org/", tags=["t"])
    make.quotation("Unlinked words.", source="Anonymous", tags=["t"])
    html = text(client.get("/tags/t/"))
    assert "<blockquote" in html and "<p>Code is <strong>read</strong> more than written.</p></blockquote>" in html
    assert '&mdash; <a href="https://python.org/">Guido</a>' in html
    assert "&mdash; Anonymous" in html


# --- Permalinks ---------------------------------------------------------------------------------


def test_permalink_shows_the_whole_post_its_date_and_linked_tags(client, make):
    entry = make.entry(
        "DJP: A plugin system for Django",
        body="First.\n\nSecond paragraph.",
        tags=["django", "plugins"],
        created=at(2024, 9, 25, 20, 44),
    )
    assert entry.get_absolute_url() == "/2024/Sep/25/djp-a-plugin-system-for-django/"
    html = text(client.get(entry.get_absolute_url()))
    assert "<h1 class=\"p-name\">DJP: A plugin system for Django</h1>" in html
    assert "Second paragraph." in html and "[..." not in html
    assert "8:44 p.m. / 25th September 2024" in html
    assert '<a class="tag p-category" href="/tags/django/" rel="tag">django</a>' in html
    assert '<a class="tag p-category" href="/tags/plugins/" rel="tag">plugins</a>' in html


def test_permalink_finds_each_kind(client, make):
    for post in [make.blogmark("A link"), make.quotation(source="A person")]:
        assert client.get(post.get_absolute_url()).status_code == 200


@pytest.mark.parametrize(
    "url",
    ["/2024/Foo/25/post/", "/2024/Feb/30/post/", "/2024/Sep/0/post/", "/2024/Sep/25/missing/", "/0/Jan/1/post/"],
)
def test_impossible_or_missing_permalinks_are_404(client, make, url):
    make.entry("Post", created=at(2024, 9, 25))
    assert client.get(url).status_code == 404


def test_draft_permalink_is_404_except_for_staff(client, make, admin_user):
    draft = make.entry("Unfinished", is_draft=True)
    assert client.get(draft.get_absolute_url()).status_code == 404
    client.force_login(admin_user)
    response = client.get(draft.get_absolute_url())
    assert response.status_code == 200
    assert '<span class="draft">Draft</span>' in text(response)


def test_a_rendered_page_lets_go_of_what_it_showed_without_the_garbage_collector(rf):
    """A page's context is a reference cycle in Django's own templates, freed only by the garbage
    collector, which kept the search page's thousand rows in a worker for hundreds of requests
    (blogworks/serving.py ReleasingTemplate): ours is freed as soon as the page is rendered."""
    import gc
    import weakref

    from django.template.loader import render_to_string

    class Shown(list):
        pass

    shown = Shown(range(1000))
    still_held = weakref.ref(shown)
    gc.disable()
    try:
        assert "<main>" in render_to_string("base.html", {"rows": shown}, request=rf.get("/"))
        del shown
        assert still_held() is None
    finally:
        gc.enable()
