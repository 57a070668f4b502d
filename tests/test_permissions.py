"""Permissions hold on every way in: Django's per-model permissions, never merely being staff.

A staff user is someone who may log in to the admin; what they may read and write there, in the
admin's tools, on draft permalinks and through the API is what their permissions say.
"""

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from factories import at

from linkblog import ApiToken, Blogmark, Entry, Tag

pytestmark = pytest.mark.django_db

ENTRY = {"type": "entry", "slug": "hello", "title": "Hello", "body": "Hi.", "created": "2024-05-01T12:00:00+00:00",
         "tags": ["django"], "is_draft": False}
BLOGMARK = {"type": "blogmark", "link_url": "https://example.com/", "link_title": "Example", "created": "2024-05-02T12:00:00+00:00",
            "tags": ["web"]}


def staff(django_user_model, *permissions, name="editor"):
    """A staff user holding exactly these permissions ("add_entry", ...), logged in nowhere yet."""
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="linkblog", codename__in=permissions))
    return user


def logged_in(client, user):
    client.force_login(user)
    return client


def ndjson(*records):
    return SimpleUploadedFile("blog.ndjson", "".join(json.dumps(record) + "\n" for record in records).encode())


def upload(client, *records, **options):
    return client.post("/admin/linkblog/import/", {"file": ndjson(*records), **options})


EVERY_VIEW = ["view_tag", "view_entry", "view_blogmark", "view_quotation"]
IMPORT_TAGS = ["add_tag", "change_tag"]


# The admin's tools


def test_a_staff_user_without_permissions_is_refused_every_tool_and_writes_nothing(client, django_user_model, make):
    make.entry("Secret draft", body="Unpublished words.", is_draft=True)
    logged_in(client, staff(django_user_model))
    for url in ["/admin/linkblog/import/", "/admin/linkblog/export/?format=ndjson", "/admin/linkblog/bookmarklet/"]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Your account lacks the permission" in response.content.decode()
    response = upload(client, ENTRY)
    assert response.status_code == 403
    assert not Tag.objects.exists() and Entry.objects.count() == 1
    assert "Secret draft" not in client.get("/admin/linkblog/export/?format=ndjson").content.decode()


def test_the_admin_index_links_only_to_the_tools_the_user_may_use(client, django_user_model):
    logged_in(client, staff(django_user_model))
    html = client.get("/admin/").content.decode()
    assert "linkblog-tools" not in html and "/admin/linkblog/import/" not in html
    logged_in(client, staff(django_user_model, "add_blogmark", name="linker"))
    html = client.get("/admin/").content.decode()
    assert '<a href="/admin/linkblog/bookmarklet/">Bookmarklet</a>' in html
    assert "/admin/linkblog/import/" not in html
    logged_in(client, staff(django_user_model, *EVERY_VIEW, name="reader"))
    html = client.get("/admin/").content.decode()
    assert '<a href="/admin/linkblog/import/">Import and export</a>' in html
    assert "/admin/linkblog/bookmarklet/" not in html


def test_export_needs_the_view_permission_of_every_kind_and_of_tags(client, django_user_model, make):
    make.quotation(quotation="Hidden words", is_draft=True)
    logged_in(client, staff(django_user_model, "view_tag", "view_entry", "view_blogmark"))
    response = client.get("/admin/linkblog/export/?format=ndjson")
    assert response.status_code == 403
    assert "linkblog.view_quotation" in response.content.decode()
    logged_in(client, staff(django_user_model, *EVERY_VIEW, name="reader"))
    response = client.get("/admin/linkblog/export/?format=ndjson&drafts=on")
    assert response.status_code == 200
    assert "Hidden words" in b"".join(response.streaming_content).decode()
    page = client.get("/admin/linkblog/import/").content.decode()
    assert "<h2>Export</h2>" in page and "<h2>Import</h2>" not in page  # a reader may not import


def test_an_import_needs_add_and_change_of_each_kind_in_the_file_and_of_tags(client, django_user_model):
    logged_in(client, staff(django_user_model, *IMPORT_TAGS, "add_entry", "change_entry"))
    response = upload(client, ENTRY, BLOGMARK)
    assert response.status_code == 403
    html = response.content.decode()
    assert "linkblog.add_blogmark" in html and "linkblog.change_blogmark" in html and "linkblog.add_entry" not in html
    assert not Entry.objects.exists() and not Blogmark.objects.exists() and not Tag.objects.exists()
    response = upload(client, ENTRY)
    assert response.status_code == 200 and "Imported." in response.content.decode()
    assert Entry.objects.get().title == "Hello" and list(Tag.objects.values_list("tag", flat=True)) == ["django"]


def test_an_import_that_would_only_update_still_needs_add_and_change(client, django_user_model, make):
    make.entry("Hello", slug="hello", body="Old words.", created=at(2024, 5, 1))
    logged_in(client, staff(django_user_model, *IMPORT_TAGS, "add_entry"))
    response = upload(client, ENTRY)
    assert response.status_code == 403 and "linkblog.change_entry" in response.content.decode()
    assert Entry.objects.get().body == "Old words."
    logged_in(client, staff(django_user_model, "add_entry", "change_entry", name="no-tags"))
    assert upload(client, {**ENTRY, "tags": []}).status_code == 403  # every import may make tags
    assert Entry.objects.get().body == "Old words."


def test_a_dry_run_is_refused_the_same_way(client, django_user_model):
    logged_in(client, staff(django_user_model, *IMPORT_TAGS, "add_entry", "change_entry"))
    response = upload(client, BLOGMARK, dry_run="on")
    assert response.status_code == 403 and "linkblog.add_blogmark" in response.content.decode()


def test_the_bookmarklet_needs_add_blogmark(client, django_user_model):
    logged_in(client, staff(django_user_model, "add_entry"))
    assert client.get("/admin/linkblog/bookmarklet/").status_code == 403
    assert client.get("/admin/linkblog/blog-this/", {"url": "https://example.com/"}).status_code == 403
    logged_in(client, staff(django_user_model, "add_blogmark", name="linker"))
    assert client.get("/admin/linkblog/bookmarklet/").status_code == 200
    assert client.get("/admin/linkblog/blog-this/", {"url": "https://example.com/"}).status_code == 200


def test_blog_this_names_a_draft_blogmarked_already_only_to_those_who_may_see_drafts(client, django_user_model, make):
    make.blogmark("Secret draft title", link_url="https://example.com/a", is_draft=True)
    make.blogmark("Public title", link_url="https://example.com/a", created=at(2024, 1, 1))
    logged_in(client, staff(django_user_model, "add_blogmark"))
    html = client.get("/admin/linkblog/blog-this/", {"url": "https://example.com/a"}).content.decode()
    assert "Public title" in html and "Secret draft title" not in html
    for permission in ("view_blogmark", "change_blogmark"):  # change implies view, as in Django's admin
        logged_in(client, staff(django_user_model, "add_blogmark", permission, name=permission))
        html = client.get("/admin/linkblog/blog-this/", {"url": "https://example.com/a"}).content.decode()
        assert "Secret draft title" in html, permission


# Draft permalinks


def test_a_draft_permalink_needs_the_view_permission_of_its_kind(client, django_user_model, make):
    entry, quotation = make.entry("Unfinished", is_draft=True), make.quotation(source="Not yet", is_draft=True)
    logged_in(client, staff(django_user_model))
    assert client.get(entry.get_absolute_url()).status_code == 404
    logged_in(client, staff(django_user_model, "view_quotation", name="quoter"))
    assert client.get(entry.get_absolute_url()).status_code == 404
    assert client.get(quotation.get_absolute_url()).status_code == 200
    logged_in(client, staff(django_user_model, "view_entry", name="writer"))
    response = client.get(entry.get_absolute_url())
    assert response.status_code == 200 and '<span class="draft">Draft</span>' in response.content.decode()
    logged_in(client, staff(django_user_model, "change_entry", name="editor-only"))  # change implies view
    assert client.get(entry.get_absolute_url()).status_code == 200


def test_who_may_change_a_draft_in_the_admin_may_change_it_through_the_api(client, django_user_model, make):
    draft = make.entry("Unfinished", is_draft=True)
    editor = staff(django_user_model, "change_entry")
    assert logged_in(client, editor).get(f"/admin/linkblog/entry/{draft.pk}/change/").status_code == 200
    response = api_post(client, editor, f"/api/entries/{draft.pk}", {"title": "Finished"}, method="patch")
    assert response.status_code == 200, response.content
    assert Entry.objects.get(pk=draft.pk).title == "Finished"
    outsider = staff(django_user_model, "add_entry", name="outsider")
    assert api_post(client, outsider, f"/api/entries/{draft.pk}", {"title": "Mine"}, method="patch").status_code == 403


# New tags


def api_post(client, user, url, payload, method="post"):
    token = ApiToken.issue(user)
    return getattr(client, method)(url, json.dumps(payload), content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {token}")


def test_creating_a_tag_through_the_api_needs_add_tag(client, django_user_model, make):
    make.tag("django")
    user = staff(django_user_model, "add_entry", "change_entry", "view_entry")
    response = api_post(client, user, "/api/entries", {"title": "T", "body": "B", "tags": ["django", "brand-new", "other"]})
    assert response.status_code == 403
    body = response.json()
    assert "linkblog.add_tag" in body["detail"] and "brand-new, other" in body["detail"]
    assert body["errors"][0]["field"] == "tags"
    assert not Entry.objects.exists() and list(Tag.objects.values_list("tag", flat=True)) == ["django"]
    response = api_post(client, user, "/api/entries", {"title": "T", "body": "B", "tags": ["django"]})
    assert response.status_code == 201
    entry_id = response.json()["id"]
    response = api_post(client, user, f"/api/entries/{entry_id}", {"tags": ["django", "sneaky"]}, method="patch")
    assert response.status_code == 403 and "sneaky" in response.json()["detail"]
    assert list(Entry.objects.get().tags.values_list("tag", flat=True)) == ["django"]
    assert not Tag.objects.filter(tag="sneaky").exists()


def test_the_admin_never_creates_a_tag_without_add_tag(client, django_user_model, make):
    django = make.tag("django")
    logged_in(client, staff(django_user_model, "add_entry", "view_entry", "view_tag"))
    form = client.get("/admin/linkblog/entry/add/").content.decode()
    assert 'id="add_id_tags"' not in form  # no "+" to add a tag from the post's form
    assert client.get("/admin/linkblog/tag/add/").status_code == 403
    response = client.post("/admin/linkblog/entry/add/", {"title": "T", "slug": "", "body": "B", "tags": ["new-tag"],
                                                         "created_0": "2024-05-01", "created_1": "12:00:00"})
    assert response.status_code == 200 and "errornote" in response.content.decode()
    assert list(Tag.objects.values_list("tag", flat=True)) == ["django"] and not Entry.objects.exists()
    response = client.post("/admin/linkblog/entry/add/", {"title": "T", "slug": "", "body": "B", "tags": [django.pk],
                                                         "created_0": "2024-05-01", "created_1": "12:00:00"})
    assert response.status_code == 302 and Entry.objects.get().tags.get() == django
