"""Anonymous pages come from the shared cache, and every visible write shows up at once."""

import pytest
from django.test import Client

from factories import relist
from linkblog import Entry, posts_changed

pytestmark = pytest.mark.django_db


def html(response):
    return response.content.decode()


def test_an_anonymous_page_is_served_from_the_cache_with_public_cache_control(client, make):
    make.entry("Cached entry")
    first = client.get("/")
    assert first["X-Page-Cache"] == "miss"
    assert "public" in first["Cache-Control"] and "max-age=60" in first["Cache-Control"]
    second = client.get("/")
    assert second["X-Page-Cache"] == "hit"
    assert html(second) == html(first)
    assert "max-age=60" in second["Cache-Control"]


def test_a_write_that_sends_no_signal_is_not_seen_which_proves_pages_are_cached(client, make):
    entry = make.entry("Original title")
    assert "Original title" in html(client.get("/"))
    Entry.objects.filter(pk=entry.pk).update(title="Silently changed")  # no signal: cache kept
    assert "Original title" in html(client.get("/"))


def test_a_post_saved_through_the_model_appears_at_once(client, make):
    make.entry("First")
    make.tag("django")
    for url in ("/", "/tags/django/"):
        client.get(url)
    make.entry("Second, saved like the API saves", tags=["django"])
    assert "Second, saved like the API saves" in html(client.get("/"))
    assert "Second, saved like the API saves" in html(client.get("/tags/django/"))


def test_a_post_added_in_the_admin_appears_at_once_for_readers(client, admin_user, make):
    make.entry("First")
    assert client.get("/")["X-Page-Cache"] == "miss"
    assert client.get("/")["X-Page-Cache"] == "hit"
    author = Client()
    author.force_login(admin_user)
    response = author.post(
        "/admin/linkblog/entry/add/",
        {"title": "Written in the admin", "slug": "", "body": "Hello", "created_0": "2024-05-01", "created_1": "12:00:00"},
    )
    assert response.status_code == 302, html(response)
    page = client.get("/")
    assert page["X-Page-Cache"] == "miss"
    assert "Written in the admin" in html(page)


def test_a_deleted_post_disappears_at_once(client, make):
    entry = make.entry("Short-lived")
    assert "Short-lived" in html(client.get("/"))
    entry.delete()
    assert "Short-lived" not in html(client.get("/"))


def test_a_bulk_write_followed_by_posts_changed_appears_at_once(client, make):
    make.entry("Before the import")
    client.get("/")
    imported = Entry(title="Imported in bulk", body="From an archive", slug="imported-in-bulk")
    imported.render()
    Entry.objects.bulk_create([imported])
    relist()  # bulk writes tell the listing store themselves, as the import does
    posts_changed.send(sender=Entry)
    assert "Imported in bulk" in html(client.get("/"))


def test_a_logged_in_author_never_gets_nor_fills_a_cached_page(client, admin_client, make):
    make.entry("Published")
    make.entry("Draft in progress", is_draft=True, slug="draft")
    anonymous = client.get("/")
    assert anonymous["X-Page-Cache"] == "miss"
    assert "Admin</a>" not in html(anonymous)
    mine = admin_client.get("/")
    assert "X-Page-Cache" not in mine
    assert "public" not in mine.get("Cache-Control", "")
    assert "Admin</a>" in html(mine)  # rendered for the author, not the anonymous copy
    # ...and the author's page (with its admin link) never reached anonymous readers.
    assert "Admin</a>" not in html(client.get("/"))
    assert client.get("/")["X-Page-Cache"] == "hit"


def test_an_author_sees_a_draft_permalink_fresh_while_readers_get_404(client, admin_client, make):
    draft = make.entry("Secret draft", is_draft=True)
    assert client.get(draft.get_absolute_url()).status_code == 404
    assert "Secret draft" in html(admin_client.get(draft.get_absolute_url()))
    assert client.get(draft.get_absolute_url()).status_code == 404


def test_errors_and_the_admin_are_not_cached(client, make):
    assert client.get("/tags/nothing-here/").status_code == 404
    make.entry(tags=["nothing-here"])  # a tag is for readers once a published post carries it
    assert client.get("/tags/nothing-here/").status_code == 200
    assert "X-Page-Cache" not in client.get("/admin/login/")


def test_pages_answer_conditional_gets_with_304(client, make):
    make.entry("Tagged", tags=["django"])
    for url in ("/", "/tags/django/"):
        first = client.get(url)
        assert first["ETag"]
        again = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
        assert again.status_code == 304
        assert again.content == b""
    etag = client.get("/")["ETag"]
    make.entry("Something new")
    changed = client.get("/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and "Something new" in html(changed)


def test_different_query_strings_are_different_pages(client, make):
    for number in range(35):
        make.entry(f"Numbered {number}")
    first = html(client.get("/"))
    second = html(client.get("/?page=2"))
    assert "Numbered 34" in first and "Numbered 34" not in second
    assert "Numbered 0" in second and "Numbered 0" not in first


def test_feeds_are_cached_answer_conditional_gets_and_show_a_new_post_at_once(client, make):
    make.entry("In the feed", tags=["django"])
    for url in ("/atom/everything/", "/tags/django.atom"):
        first = client.get(url)
        assert first.status_code == 200 and "In the feed" in html(first)
        assert "public" in first["Cache-Control"]
        assert client.get(url)["X-Page-Cache"] == "hit"
        assert client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    etag = client.get("/atom/everything/")["ETag"]
    make.entry("Newer in the feed", tags=["django"])
    changed = client.get("/atom/everything/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and "Newer in the feed" in html(changed)
    assert "Newer in the feed" in html(client.get("/tags/django.atom"))
