"""Writing at a real blog's size: scheduled posts, edits, draft preview links, the admin's tag box,
filters and preview, the bookmarklet, and the links around a post."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from factories import at

from blogworks.rules import web_url
from linkblog import Entry, Tag

pytestmark = pytest.mark.django_db

NOW = at(2030, 6, 1, 12)


def html(response):
    return response.content.decode()


@pytest.fixture
def clock(time_machine):
    """The clock, stopped at NOW; tests move it with clock.move_to(...)."""
    time_machine.move_to(NOW, tick=False)
    return time_machine


READER_PAGES = ["/", "/tags/web/", "/atom/everything/", "/tags/web.atom", "/tags/", "/sitemap-posts.xml", "/sitemap-tags.xml",
                "/search/?q=scheduled", "/archive/", "/api/items", "/api/tags/web"]


def test_a_scheduled_post_appears_everywhere_at_its_moment_and_not_before(client, make, clock):
    make.entry("Already out", tags=["web"], created=NOW - timedelta(days=1))
    make.entry("A scheduled entry", body="Scheduled words.", tags=["web", "later"], created=NOW + timedelta(hours=1))
    for url in READER_PAGES:
        page = html(client.get(url))
        assert "A scheduled entry" not in page and "/later/" not in page, url
    assert client.get("/api/tags/web").json()["post_count"] == 1
    assert client.get("/2030/Jun/1/a-scheduled-entry/").status_code == 404

    clock.move_to(NOW + timedelta(hours=1, seconds=1), tick=False)
    for url in READER_PAGES[:3] + ["/sitemap-posts.xml", "/search/?q=scheduled", "/api/items"]:
        assert "a-scheduled-entry" in html(client.get(url)), url
    assert "/tags/later/" in html(client.get("/tags/"))
    assert client.get("/api/tags/web").json()["post_count"] == 2
    assert client.get("/2030/Jun/1/a-scheduled-entry/").status_code == 200


def test_the_page_cache_does_not_outlive_the_next_scheduled_post(client, make, clock):
    make.entry("Scheduled for later", created=NOW + timedelta(minutes=10))
    first = client.get("/")
    assert first["X-Page-Cache"] == "miss"
    assert client.get("/")["X-Page-Cache"] == "hit"
    clock.move_to(NOW + timedelta(seconds=590), tick=False)
    cached = client.get("/")
    assert cached["X-Page-Cache"] == "hit" and "max-age=" in cached["Cache-Control"]
    clock.move_to(NOW + timedelta(minutes=10), tick=False)
    fresh = client.get("/")
    assert fresh["X-Page-Cache"] == "miss"
    assert "Scheduled for later" in html(fresh)
    assert "max-age=60" in fresh["Cache-Control"]  # a new generation: nothing is scheduled any more
    assert client.get("/")["X-Page-Cache"] == "hit"


def test_browsers_are_told_to_keep_a_page_no_longer_than_until_the_next_scheduled_post(client, make, clock):
    make.entry("Soon", created=NOW + timedelta(seconds=20))
    assert "max-age=20" in client.get("/")["Cache-Control"]


def test_the_admin_lists_a_scheduled_post_as_scheduled(clock, admin_client, make):
    make.entry("Future entry", created=NOW + timedelta(days=2))
    make.entry("Draft entry", is_draft=True)
    make.entry("Out entry", created=NOW - timedelta(days=2))
    page = html(admin_client.get("/admin/linkblog/entry/?status=scheduled"))
    assert "Future entry" in page and "Draft entry" not in page and "Out entry" not in page
    assert '<td class="field-status">Scheduled</td>' in page
    assert "Out entry" in html(admin_client.get("/admin/linkblog/entry/?status=published"))


def test_an_edit_sets_updated_and_feeds_and_the_sitemap_use_it(client, make, clock):
    entry = make.entry("Edited entry", created=NOW - timedelta(days=3))
    assert entry.updated is None
    entry.save()  # nothing changed
    assert Entry.objects.get(pk=entry.pk).updated is None
    entry.body = "A better paragraph."
    entry.save()
    assert Entry.objects.get(pk=entry.pk).updated == NOW
    feed = html(client.get("/atom/everything/"))
    assert "<updated>2030-06-01T12:00:00+00:00</updated>" in feed
    assert "<published>2030-05-29T12:00:00+00:00</published>" in feed
    assert "<lastmod>2030-06-01</lastmod>" in html(client.get("/sitemap-posts.xml"))


def login(user):
    browser = Client()
    browser.force_login(user)
    return browser


def test_staff_who_may_change_a_post_see_its_edit_link_and_it_never_reaches_the_cache(client, make, admin_user, django_user_model):
    entry = make.entry("Editable entry", created=at(2024, 1, 1))
    edit = f'href="/admin/linkblog/entry/{entry.pk}/change/"'
    assert edit in html(login(admin_user).get("/"))
    assert edit in html(login(admin_user).get(entry.get_absolute_url()))
    anonymous = client.get("/")
    assert edit not in html(anonymous) and anonymous["X-Page-Cache"] == "miss"
    assert edit not in html(client.get(entry.get_absolute_url()))
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_entry"))
    assert edit not in html(login(viewer).get("/"))


def test_a_permalink_links_the_previous_and_next_posts_of_any_kind(client, make):
    first = make.entry("First post", created=at(2024, 1, 1))
    middle = make.blogmark("Middle link", created=at(2024, 1, 2))
    make.entry("A draft between", created=at(2024, 1, 3), is_draft=True)
    last = make.quotation(source="Last speaker", created=at(2024, 1, 4))
    page = html(client.get(middle.get_absolute_url()))
    assert f'rel="prev" href="{first.get_absolute_url()}"' in page
    assert f'rel="next" href="{last.get_absolute_url()}"' in page
    assert "A draft between" not in page
    assert 'rel="prev"' not in html(client.get(first.get_absolute_url()))


def test_a_scheduled_post_shown_to_its_author_links_back_to_the_newest_published_post(client, admin_client, make):
    make.entry("Older post", created=at(2024, 1, 1))
    newest = make.blogmark("Newest published", created=at(2024, 1, 2))
    make.entry("Scheduled sooner", created=at(2098, 1, 1))
    scheduled = make.quotation(source="Scheduled speaker", created=at(2099, 1, 1))
    make.entry("Scheduled later still", created=at(2099, 6, 1))
    page = html(admin_client.get(scheduled.get_absolute_url()))
    assert f'rel="prev" href="{newest.get_absolute_url()}"' in page and 'rel="next"' not in page
    assert 'rel="next"' not in html(client.get(newest.get_absolute_url()))
    assert client.get(scheduled.get_absolute_url()).status_code == 404


def test_a_secret_preview_link_shows_a_draft_to_anyone_who_holds_it_until_revoked(client, admin_client, make):
    draft = make.entry("Secret draft", body="Not out yet.", is_draft=True)
    response = admin_client.post("/admin/linkblog/entry/", {"action": "share_preview", "_selected_action": [draft.pk]})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert len(draft.preview_token) >= 32
    url = f"/preview/{draft.preview_token}/"
    assert url in html(admin_client.get(f"/admin/linkblog/entry/{draft.pk}/change/"))
    shown = client.get(url)
    assert shown.status_code == 200
    assert "Not out yet." in html(shown) and "draft-banner" in html(shown)
    assert '<meta name="robots" content="noindex, nofollow">' in html(shown)
    assert shown["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in shown["Cache-Control"] and "X-Page-Cache" in shown and shown["X-Page-Cache"] == "miss"
    assert client.get(url)["X-Page-Cache"] == "miss"
    one_letter_off = draft.preview_token[:-1] + ("y" if draft.preview_token.endswith("x") else "x")
    assert client.get(f"/preview/{one_letter_off}/").status_code == 404
    admin_client.post("/admin/linkblog/entry/", {"action": "revoke_preview", "_selected_action": [draft.pk]})
    assert client.get(url).status_code == 404
    assert client.get("/preview/short/").status_code == 404


def autocomplete(admin_client, term):
    response = admin_client.get("/admin/autocomplete/", {"term": term, "app_label": "linkblog", "model_name": "entry", "field_name": "tags"})
    return [result["text"] for result in response.json()["results"]]


@pytest.fixture
def real_tag_set(make):
    """Tags as a real blog has them: many sharing prefixes, used more or less often."""
    names = ["activepython", "python", "python3", "pythonanywhere", "ironpython", "cpython", "web", "webassembly",
             "amazon-web-services", "web-components", "webkit"]
    Tag.objects.bulk_create([Tag(tag=name, description="A python and web thing") for name in names])
    Tag.objects.bulk_create([Tag(tag=f"tag-{number:04}", description="python web") for number in range(2000)])
    uses = {"python": 9, "python3": 2, "pythonanywhere": 5, "cpython": 7, "webassembly": 4, "web-components": 6, "webkit": 1}
    posts = Entry.objects.bulk_create([Entry(title=f"Post {n}", body="x", slug=f"post-{n}", created=at(2024, 1, 1)) for n in range(10)])
    links = [Entry.tags.through(entry_id=posts[n].pk, tag_id=Tag.objects.get(tag=name).pk)
             for name, count in uses.items() for n in range(count)]
    Entry.tags.through.objects.bulk_create(links)


def test_tag_autocomplete_puts_the_exact_tag_then_prefixes_by_use_then_the_rest(admin_client, real_tag_set):
    assert autocomplete(admin_client, "pyth") == ["python", "pythonanywhere", "python3", "cpython", "activepython", "ironpython"]
    assert autocomplete(admin_client, "python")[0] == "python"
    assert autocomplete(admin_client, "web") == ["web", "web-components", "webassembly", "webkit", "amazon-web-services"]
    assert autocomplete(admin_client, "Web")[0] == "web"


def add_entry(browser, **fields):
    data = {"title": "With new tags", "slug": "", "body": "Text.", "created_0": "2024-01-01", "created_1": "12:00:00", **fields}
    return browser.post("/admin/linkblog/entry/add/", data)


def test_a_new_tag_typed_in_the_tags_box_is_created_with_the_post(admin_client, make):
    web = make.tag("web")
    response = add_entry(admin_client, tags=[str(web.pk), "new:brand-new", "new:web"])
    assert response.status_code == 302
    assert sorted(Entry.objects.get().tags.values_list("tag", flat=True)) == ["brand-new", "web"]


def test_a_bad_new_tag_name_is_a_form_error_and_creates_nothing(admin_client):
    response = add_entry(admin_client, tags=["new:not a slug!", "new:fine"])
    assert response.status_code == 200
    assert "not a slug" in html(response)
    assert "fine (new tag)" not in html(response) and ">fine</option>" in html(response)
    assert not Tag.objects.exists() and not Entry.objects.exists()


def test_only_users_who_may_add_tags_can_create_them(django_user_model, make):
    writer = django_user_model.objects.create_user("writer", password="pw", is_staff=True)
    writer.user_permissions.add(*Permission.objects.filter(codename__in=["add_entry", "view_tag"]))
    browser = login(writer)
    assert 'data-tags="true"' not in html(browser.get("/admin/linkblog/entry/add/"))
    response = add_entry(browser, tags=["new:sneaky"])
    assert response.status_code == 200 and "may not create tags" in html(response)
    assert not Tag.objects.exists()
    writer.user_permissions.add(Permission.objects.get(codename="add_tag"))
    assert 'data-tags="true"' in html(login(writer).get("/admin/linkblog/entry/add/"))


def test_lists_filter_by_a_tag_typed_in_a_box_not_a_link_per_tag(admin_client, make, real_tag_set):
    make.blogmark("Tagged web", tags=["web"])
    make.blogmark("Tagged other", tags=["webkit"])
    page = html(admin_client.get("/admin/linkblog/blogmark/"))
    assert "tag-0999" not in page
    assert '<input type="search" name="tag"' in page
    filtered = html(admin_client.get("/admin/linkblog/blogmark/?tag=web&status=published"))
    assert "Tagged web" in filtered and "Tagged other" not in filtered
    assert '<input type="hidden" name="status" value="published">' in filtered


def test_long_cells_are_truncated_with_the_whole_value_in_a_tooltip(admin_client, make):
    long_url = "https://example.com/" + "a-very-long-path/" * 25
    make.blogmark("Long link", link_url=long_url)
    page = html(admin_client.get("/admin/linkblog/blogmark/"))
    assert f'title="{long_url}"' in page
    assert f">{long_url}<" not in page


def test_the_markdown_preview_is_the_sites_renderer_and_sanitizer(admin_client, client):
    response = admin_client.post("/admin/linkblog/preview/", {"text": "Hello *world* <script>alert(1)</script> [x](javascript:alert(1))"})
    assert response.status_code == 200
    assert "<em>world</em>" in html(response)
    assert "<script" not in html(response) and "javascript:" not in html(response)
    assert admin_client.get("/admin/linkblog/preview/").status_code == 405
    assert client.post("/admin/linkblog/preview/", {"text": "x"}).status_code == 302  # staff only
    form = html(admin_client.get("/admin/linkblog/entry/add/"))
    assert 'data-markdown-preview="/admin/linkblog/preview/"' in form and "linkblog-admin.js" in form


def test_the_bookmarklet_offers_a_quotation_of_the_selection_and_warns_of_a_duplicate(admin_client, make):
    old = make.blogmark("Seen before", link_url="https://example.com/a page?x=1")
    page = html(admin_client.get("/admin/linkblog/blog-this/", {"url": "https://example.com/a page?x=1", "title": "A page", "selection": "Quoted words"}))
    assert "Already blogged" in page and f'href="{old.get_absolute_url()}"' in page
    assert "/admin/linkblog/quotation/add/?quotation=Quoted+words&amp;source=A+page&amp;source_url=https%3A%2F%2Fexample.com%2Fa+page%3Fx%3D1" in page
    fresh = html(admin_client.get("/admin/linkblog/blog-this/", {"url": "https://example.com/new", "title": "New"}))
    assert "Already blogged" not in fresh and "add-quotation" not in fresh and "add-blogmark" in fresh


def test_the_add_form_from_the_bookmarklet_is_an_add_form(admin_client):
    page = html(admin_client.get("/admin/linkblog/blogmark/add/", {"link_url": "https://example.com/x", "link_title": "X"}))
    assert "Currently:" not in page
    assert 'value="https://example.com/x"' in page


def test_the_api_says_whether_a_url_is_blogged(client, make):
    post = make.blogmark("Blogged", link_url="https://example.com/blogged")
    make.blogmark("Other", link_url="https://example.com/other")
    make.blogmark("Secret", link_url="https://example.com/secret", is_draft=True)
    found = client.get("/api/blogmarks", {"link_url": "https://example.com/blogged"}).json()
    assert found["count"] == 1 and found["items"][0]["id"] == post.pk
    assert client.get("/api/blogmarks", {"link_url": "https://example.com/secret"}).json()["count"] == 0
    assert client.get("/api/blogmarks", {"link_url": "x" * 1001}).status_code == 422
    typed = make.blogmark("Typed", link_url=web_url("https://bücher.example/a page?q=ä"))  # stored as every way in stores it
    assert typed.link_url == "https://xn--bcher-kva.example/a%20page?q=%C3%A4"
    for url in ("https://bücher.example/a page?q=ä", typed.link_url):  # as typed or pasted, and as stored
        assert [item["id"] for item in client.get("/api/blogmarks", {"link_url": url}).json()["items"]] == [typed.pk], url


def test_without_javascript_tags_are_added_by_name_in_a_plain_box(admin_client, make, django_user_model):
    make.tag("web")
    response = add_entry(admin_client, add_tags="web, Brand-New  other")
    assert response.status_code == 302
    assert sorted(Entry.objects.get().tags.values_list("tag", flat=True)) == ["brand-new", "other", "web"]
    writer = django_user_model.objects.create_user("writer", password="pw", is_staff=True)
    writer.user_permissions.add(*Permission.objects.filter(codename__in=["add_entry", "view_tag"]))
    refused = add_entry(login(writer), title="Second", add_tags="web nope")
    assert refused.status_code == 200 and "There is no tag “nope”" in html(refused)
    assert add_entry(login(writer), title="Third", add_tags="web").status_code == 302
    assert not Tag.objects.filter(tag="nope").exists()


def test_admin_search_uses_the_sites_search_and_its_language_drafts_included(admin_client, make):
    make.blogmark("Tapir facts", link_url="https://example.com/tapirs", tags=["animals"], is_draft=True)
    make.blogmark("Tapir news", link_url="https://example.com/other", tags=["news"])
    make.blogmark("Unrelated", link_url="https://example.com/tapir-page")
    page = html(admin_client.get("/admin/linkblog/blogmark/", {"q": "tapir tag:animals"}))
    assert "Tapir facts" in page and "Tapir news" not in page and "Unrelated" not in page
    by_url = html(admin_client.get("/admin/linkblog/blogmark/", {"q": "example.com/tapir-page"}))
    assert "Unrelated" in by_url and "Tapir news" not in by_url


def test_lists_filter_by_year_without_a_date_hierarchy(admin_client, make):
    make.entry("Old entry", created=at(2009, 5, 1))
    make.entry("New entry", created=at(2024, 5, 1))
    page = html(admin_client.get("/admin/linkblog/entry/"))
    assert "?year=2009" in page and "?year=2016" in page and "?year=2024" in page
    filtered = html(admin_client.get("/admin/linkblog/entry/?year=2009"))
    assert "Old entry" in filtered and "New entry" not in filtered


def test_previous_and_next_walk_every_post_even_those_of_one_moment(client, make):
    """A bookmarklet session or an import can give several posts the same minute: walking "previous"
    from the newest post must visit every post once, in the home page's order, and "next" back."""
    moment = at(2024, 1, 2)
    make.entry("Before", created=at(2024, 1, 1))
    for number in range(2):
        make.entry(f"Entry {number}", created=moment)
        make.blogmark(f"Link {number}", created=moment)
    make.quotation(source="Speaker", created=moment)
    make.entry("After", created=at(2024, 1, 3))
    listed = re.findall(r'<a class="date u-url" href="([^"]+)"', html(client.get("/")))
    assert len(listed) == 7

    def walk(start, rel):
        visited = [start]
        while found := re.search(rf'rel="{rel}" href="([^"]+)"', html(client.get(visited[-1]))):
            visited.append(found.group(1))
            assert len(visited) <= len(listed), visited
        return visited

    assert walk(listed[0], "prev") == listed
    assert walk(listed[-1], "next") == listed[::-1]
