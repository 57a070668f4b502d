"""The admin is where the author writes: every model is listed, searchable and editable."""

import re

import pytest
from factories import at

from linkblog import Blogmark, Entry, Tag

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["tag", "entry", "blogmark", "quotation"])
def test_admin_pages_need_a_login(client, model):
    response = client.get(f"/admin/linkblog/{model}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("model", ["entry", "blogmark", "quotation"])
def test_post_changelists_search_and_filter(admin_client, make, model):
    make.entry("Findable entry", tags=["django"], created=at(2024, 1, 1))
    make.blogmark("Findable link", tags=["django"], created=at(2024, 1, 1))
    make.quotation(source="Findable source", tags=["django"], is_draft=True)
    make.entry("Hidden entry")
    make.blogmark("Hidden link")
    make.quotation(source="Hidden source")
    assert "Hidden" in admin_client.get(f"/admin/linkblog/{model}/").content.decode()
    found = admin_client.get(f"/admin/linkblog/{model}/?q=findable")
    assert found.status_code == 200
    assert "Findable" in found.content.decode() and "Hidden" not in found.content.decode()
    by_tag = admin_client.get(f"/admin/linkblog/{model}/?q=django").content.decode()
    assert "Findable" in by_tag and "Hidden" not in by_tag
    assert admin_client.get(f"/admin/linkblog/{model}/?is_draft__exact=1").status_code == 200
    assert admin_client.get(f"/admin/linkblog/{model}/?created__year=2024").status_code == 200
    assert admin_client.get(f"/admin/linkblog/{model}/add/").status_code == 200


def test_tag_changelist_shows_published_post_counts(admin_client, make):
    make.entry(tags=["django"])
    make.blogmark(tags=["django"])
    make.quotation(tags=["django"], is_draft=True)
    html = admin_client.get("/admin/linkblog/tag/").content.decode()
    assert re.search(r'<td class="field-post_count">2</td>', html)


def test_tag_autocomplete_answers(admin_client, make):
    make.tag("django")
    make.tag("python")
    response = admin_client.get(
        "/admin/autocomplete/", {"term": "dja", "app_label": "linkblog", "model_name": "entry", "field_name": "tags"}
    )
    assert response.status_code == 200
    assert [result["text"] for result in response.json()["results"]] == ["django"]


def test_adding_a_blogmark_renders_it_and_makes_a_slug(admin_client, make):
    django, python = make.tag("django"), make.tag("python")
    response = admin_client.post(
        "/admin/linkblog/blogmark/add/",
        {
            "link_url": "https://example.com/article",
            "link_title": "A fine article",
            "slug": "",
            "commentary": "Worth *reading*.",
            "via_url": "",
            "via_title": "",
            "tags": [django.pk, python.pk],
            "created_0": "2024-09-25",
            "created_1": "10:00:00",
        },
    )
    assert response.status_code == 302, re.findall(r"errorlist.{0,300}", response.content.decode(), re.S)
    blogmark = Blogmark.objects.get()
    assert blogmark.slug == "a-fine-article"
    assert blogmark.html == "<p>Worth <em>reading</em>.</p>"
    assert sorted(tag.tag for tag in blogmark.tags.all()) == ["django", "python"]


def test_a_clashing_slug_is_a_form_error_not_a_crash(admin_client, make):
    make.entry("First", slug="same", created=at(2024, 9, 25, 9))
    response = admin_client.post(
        "/admin/linkblog/entry/add/",
        {"title": "Second", "slug": "same", "body": "b", "created_0": "2024-09-25", "created_1": "18:00:00"},
    )
    assert response.status_code == 200
    assert "already uses the slug" in response.content.decode()
    assert Entry.objects.count() == 1


def test_change_page_links_to_the_post_on_the_site(admin_client, make):
    entry = make.entry("Viewable")
    html = admin_client.get(f"/admin/linkblog/entry/{entry.pk}/change/").content.decode()
    assert "View on site" in html
    view_on_site = re.search(r'href="(/admin/r/[^"]+)"', html).group(1)
    assert admin_client.get(view_on_site)["Location"].endswith(entry.get_absolute_url())


def test_migrate_creates_permissions_so_staff_can_be_given_rights(client, django_user_model, make):
    from django.contrib.auth.models import Permission

    editor = django_user_model.objects.create_user("editor", password="pw-for-tests", is_staff=True)
    assert client.login(username="editor", password="pw-for-tests")
    assert client.get("/admin/linkblog/entry/").status_code == 403
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_entry", "add_entry"]))
    assert client.get("/admin/linkblog/entry/").status_code == 200
    response = client.post(
        "/admin/linkblog/entry/add/",
        {"title": "By an editor", "slug": "", "body": "b", "created_0": "2024-09-25", "created_1": "18:00:00"},
    )
    assert response.status_code == 302


def test_a_tag_differing_only_in_case_is_a_form_error(admin_client, make):
    make.tag("django")
    response = admin_client.post("/admin/linkblog/tag/add/", {"tag": "Django", "description": ""})
    assert response.status_code == 200
    assert "Tag with this Tag already exists." in response.content.decode()


def test_a_date_whose_day_has_no_end_is_a_form_error_not_a_crash(admin_client):
    response = admin_client.post(
        "/admin/linkblog/entry/add/",
        {"title": "Last day", "slug": "", "body": "b", "created_0": "9999-12-31", "created_1": "12:00:00"},
    )
    assert response.status_code == 200
    assert "day must end before the year 10000" in response.content.decode()
    assert "has_slug" not in response.content.decode()  # the one real error, not a constraint's echo of it
    assert not Entry.objects.exists()


def test_odd_values_in_a_form_or_its_address_are_form_errors_not_crashes(admin_client, make):
    make.tag("web")
    too_big = "99999999999999999999"  # a tag id no database integer holds
    response = admin_client.post("/admin/linkblog/entry/add/", {"title": "T", "slug": "", "body": "b", "created_0": "2024-06-01",
                                                                 "created_1": "12:00:00", "tags": [too_big]})
    assert response.status_code == 200 and "is not a valid value" in response.content.decode()
    assert admin_client.get(f"/admin/linkblog/entry/add/?tags={too_big}").status_code == 200
    for created in ("garbage", "2024-13-45T10:00:00"):  # a link that pre-fills the form
        response = admin_client.get(f"/admin/linkblog/blogmark/add/?created={created}&link_title=T")
        assert response.status_code == 200 and 'value="T"' in response.content.decode(), created
    response = admin_client.get("/admin/linkblog/blogmark/add/?created=2024-06-01T10:30:00")
    assert 'value="2024-06-01"' in response.content.decode()


def test_renaming_a_tag_in_the_admin_leaves_its_old_address_redirecting(admin_client, client, make):
    make.entry("Tagged", tags=["js"])
    tag = Tag.objects.get(tag="js")
    response = admin_client.post(f"/admin/linkblog/tag/{tag.pk}/change/", {"tag": "javascript", "description": "The language."})
    assert response.status_code == 302
    assert Tag.objects.get(pk=tag.pk).description == "The language."
    moved = client.get("/tags/js/")
    assert (moved.status_code, moved["Location"]) == (301, "/tags/javascript/")
    assert "Tagged" in client.get("/tags/javascript/").content.decode()
