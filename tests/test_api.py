"""The JSON API under /api/, through its real routes: reads, filters, writes, auth, errors, tags."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from factories import at

from linkblog import ApiToken, Blogmark, Entry, Quotation, Tag, TagRedirect

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "secret-pw")


@pytest.fixture
def token(admin_user):
    return ApiToken.issue(admin_user, "tests")


class Api:
    """The Django test client speaking JSON, with or without a bearer token."""

    def __init__(self, client, token=None):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def get(self, url, **params):
        return self.client.get(url, params, **self.headers)

    def send(self, method, url, payload=None, raw=None):
        body = raw if raw is not None else json.dumps(payload if payload is not None else {})
        return getattr(self.client, method)(url, body, content_type="application/json", **self.headers)

    def post(self, url, payload=None, raw=None):
        return self.send("post", url, payload, raw)

    def put(self, url, payload=None):
        return self.send("put", url, payload)

    def patch(self, url, payload=None):
        return self.send("patch", url, payload)

    def delete(self, url):
        return self.client.delete(url, **self.headers)


@pytest.fixture
def anon(client):
    return Api(client)


@pytest.fixture
def api(client, token):
    return Api(client, token)


def fields_at_fault(response):
    return {error["field"] for error in response.json()["errors"]}


# --- GET /api/items: mixed kinds, filters, pagination -------------------------------------------


def test_items_mix_every_kind_newest_first_with_their_fields(anon, make):
    make.entry("An entry", body="Some *words* here.", tags=["django", "python"], created=at(2024, 1, 3))
    make.blogmark("A link", link_url="https://example.com/a", commentary="Nice.", created=at(2024, 1, 2))
    make.quotation("Wise words.", source="Someone", source_url="https://example.com/q", created=at(2024, 1, 1))
    response = anon.get("/api/items")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    entry, blogmark, quotation = body["items"]
    assert [entry["type"], blogmark["type"], quotation["type"]] == ["entry", "blogmark", "quotation"]
    assert entry["title"] == "An entry"
    assert entry["tags"] == ["django", "python"]
    assert entry["html"] == "<p>Some <em>words</em> here.</p>"
    assert entry["url"].endswith("/2024/Jan/3/an-entry/")
    assert blogmark["link_url"] == "https://example.com/a" and blogmark["commentary"] == "Nice."
    assert quotation["quotation"] == "Wise words." and quotation["source"] == "Someone"


def test_items_are_sent_exactly_as_each_kind_reads_them(anon, make):
    """/api/items sends stored JSON (blogworks/cards.py): byte for byte what the API itself renders."""
    with_microseconds = at(2024, 1, 3).replace(microsecond=123456)  # as a post written in the admin has
    posts = [make.entry("An entry", tags=["django"], created=with_microseconds),
             make.blogmark("A link", link_url="https://example.com/a", via_url="https://example.com/via", created=at(2024, 1, 2)),
             make.quotation("Wise “words”.", source="Someone", created=at(2024, 1, 1))]
    listed = anon.get("/api/items")
    for post in posts:
        alone = anon.get(f"/api/{post._meta.verbose_name_plural}/{post.pk}").content.decode()
        assert alone in listed.content.decode()
    assert '"created": "2024-01-03T12:00:00.123Z"' in listed.content.decode()  # as Django's JSON encoder writes it


def test_items_filter_by_type_repeatable(anon, make):
    make.entry("E")
    make.blogmark("B")
    make.quotation(source="Q")
    only_entries = anon.get("/api/items", type="entry").json()
    assert [item["type"] for item in only_entries["items"]] == ["entry"]
    two_kinds = anon.get("/api/items", type=["entry", "quotation"]).json()
    assert sorted(item["type"] for item in two_kinds["items"]) == ["entry", "quotation"]
    assert anon.get("/api/items", type="essay").status_code == 422


def test_items_filter_by_tags_needs_every_tag(anon, make):
    make.entry("Both", tags=["django", "python"])
    make.blogmark("Only django", tags=["django"])
    make.quotation(source="Only python", tags=["python"])
    assert anon.get("/api/items", tag="django").json()["count"] == 2
    both = anon.get("/api/items", tag=["django", "python"]).json()
    assert [item["title"] for item in both["items"]] == ["Both"]
    assert anon.get("/api/items", tag="Django").json()["count"] == 2  # tag names are lower case
    assert anon.get("/api/items", tag="nope").json()["count"] == 0
    assert anon.get("/api/items", tag=["django", "django"]).json()["count"] == 2  # a repeat changes nothing
    assert anon.get("/api/items", tag=[f"t{number}" for number in range(11)]).status_code == 422


def test_items_filter_by_year_month_since_and_before(anon, make):
    make.entry("Jan 2023", created=at(2023, 1, 10))
    make.entry("Mar 2023", created=at(2023, 3, 10))
    make.entry("Mar 2024", created=at(2024, 3, 10))

    def titles(**params):
        return [item["title"] for item in anon.get("/api/items", **params).json()["items"]]

    assert titles(year=2023) == ["Mar 2023", "Jan 2023"]
    assert titles(month=3) == ["Mar 2024", "Mar 2023"]
    assert titles(year=2023, month=3) == ["Mar 2023"]
    assert titles(since="2023-03-10T12:00:00Z") == ["Mar 2024", "Mar 2023"]
    assert titles(before="2023-03-10T12:00:00Z") == ["Jan 2023"]
    assert titles(since="2023-02-01T00:00:00Z", before="2024-01-01T00:00:00Z") == ["Mar 2023"]
    assert anon.get("/api/items", month=13).status_code == 422
    assert anon.get("/api/items", since="yesterday").status_code == 422
    assert anon.get("/api/items", since="1714564800").status_code == 422  # a Unix time is no date-time


def test_items_pagination_is_stable_and_counts_everything(anon, make):
    created = at(2024, 5, 5)  # all at the same moment: order falls back to the newest id
    posts = [make.entry(f"Post {number}", created=created) for number in range(7)]
    first = anon.get("/api/items", limit=3).json()
    second = anon.get("/api/items", limit=3, offset=3).json()
    third = anon.get("/api/items", limit=3, offset=6).json()
    assert first["count"] == second["count"] == 7
    ids = [item["id"] for page in (first, second, third) for item in page["items"]]
    assert ids == [post.pk for post in reversed(posts)]


def test_items_default_page_is_30_and_more_than_200_is_refused(anon, make):
    created = at(2024, 5, 5)
    for number in range(31):
        make.quotation(source=f"S{number}", created=created)
    assert len(anon.get("/api/items").json()["items"]) == 30
    assert len(anon.get("/api/items", limit=200).json()["items"]) == 31
    refused = anon.get("/api/items", limit=201)
    assert refused.status_code == 422
    assert fields_at_fault(refused) == {"limit"}
    assert "200" in refused.json()["detail"]


def test_items_query_count_does_not_grow_with_page_size(anon, make):
    for number in range(12):  # interleaved, so that any three posts in a row hold every kind
        make.entry(f"E{number}", tags=["a", "b"], created=at(2024, 5, 5, minute=3 * number))
        make.blogmark(f"B{number}", tags=["a"], created=at(2024, 5, 5, minute=3 * number + 1))
        make.quotation(source=f"Q{number}", tags=["b"], created=at(2024, 5, 5, minute=3 * number + 2))

    def queries(limit):
        with CaptureQueriesContext(connection) as captured:
            assert len(anon.get("/api/items", limit=limit).json()["items"]) == limit
        return len(captured)

    assert queries(3) == queries(30)


def test_anonymous_callers_never_see_drafts(anon, make):
    make.entry("Public")
    draft = make.entry("Secret", is_draft=True)
    make.tag("t")
    items = anon.get("/api/items").json()
    assert [item["title"] for item in items["items"]] == ["Public"]
    assert anon.get("/api/entries").json()["count"] == 1
    assert anon.get(f"/api/entries/{draft.pk}").status_code == 404
    refused = anon.get("/api/items", is_draft="true")
    assert refused.status_code == 401


def test_authenticated_callers_see_and_filter_drafts(api, make):
    make.entry("Public")
    draft = make.entry("Secret", is_draft=True)
    assert api.get("/api/items").json()["count"] == 2
    drafts = api.get("/api/items", is_draft="true").json()
    assert [item["title"] for item in drafts["items"]] == ["Secret"]
    assert [item["title"] for item in api.get("/api/items", is_draft="false").json()["items"]] == ["Public"]
    assert api.get(f"/api/entries/{draft.pk}").json()["is_draft"] is True


# --- Each kind: list, create, read, replace, update, delete -------------------------------------


def test_kind_lists_hold_only_their_kind(anon, make):
    make.entry("E", tags=["x"])
    make.blogmark("B", tags=["x"])
    make.quotation(source="Q")
    assert [item["title"] for item in anon.get("/api/entries").json()["items"]] == ["E"]
    assert [item["link_title"] for item in anon.get("/api/blogmarks", tag="x").json()["items"]] == ["B"]
    assert [item["source"] for item in anon.get("/api/quotations").json()["items"]] == ["Q"]


def test_create_an_entry_with_new_tags_a_made_slug_and_the_current_time(api):
    response = api.post("/api/entries", {"title": "Hello, World!", "body": "Some **bold** text.", "tags": ["New-Tag", "python"]})
    assert response.status_code == 201
    entry = response.json()
    assert entry["type"] == "entry"
    assert entry["slug"] == "hello-world"
    assert entry["tags"] == ["new-tag", "python"]
    assert entry["html"] == "<p>Some <strong>bold</strong> text.</p>"
    stored = Entry.objects.get(pk=entry["id"])
    assert stored.title == "Hello, World!"
    assert sorted(Tag.objects.values_list("tag", flat=True)) == ["new-tag", "python"]
    assert api.client.get(stored.get_absolute_url()).status_code == 200


def test_create_a_blogmark_and_a_quotation_with_a_chosen_date_and_slug(api):
    blogmark = api.post("/api/blogmarks", {
        "link_url": "https://example.com/", "link_title": "Example", "via_url": "https://via.example/",
        "via_title": "Via", "commentary": "Worth *reading*.", "created": "2021-07-04T10:00:00Z", "slug": "ex",
    })
    assert blogmark.status_code == 201
    assert blogmark.json()["url"].endswith("/2021/Jul/4/ex/")
    assert blogmark.json()["html"] == "<p>Worth <em>reading</em>.</p>"
    quotation = api.post("/api/quotations", {"quotation": "To be.", "source": "Hamlet", "source_url": "https://example.com/h"})
    assert quotation.status_code == 201
    assert Quotation.objects.get(pk=quotation.json()["id"]).source_url == "https://example.com/h"


def test_read_one_post_of_each_kind(anon, make):
    entry, blogmark, quotation = make.entry("E"), make.blogmark("B"), make.quotation(source="Q")
    assert anon.get(f"/api/entries/{entry.pk}").json()["title"] == "E"
    assert anon.get(f"/api/blogmarks/{blogmark.pk}").json()["link_title"] == "B"
    assert anon.get(f"/api/quotations/{quotation.pk}").json()["source"] == "Q"


def test_put_replaces_every_field_but_keeps_date_and_slug_when_left_out(api, make):
    entry = make.entry("Old title", body="Old", tags=["old"], created=at(2022, 2, 2))
    response = api.put(f"/api/entries/{entry.pk}", {"title": "New title", "body": "New body", "tags": ["new"]})
    assert response.status_code == 200
    entry.refresh_from_db()
    assert (entry.title, entry.body, entry.slug, entry.created) == ("New title", "New body", "old-title", at(2022, 2, 2))
    assert [tag.tag for tag in entry.tags.all()] == ["new"]
    missing_body = api.put(f"/api/entries/{entry.pk}", {"title": "Only a title"})
    assert missing_body.status_code == 422
    assert fields_at_fault(missing_body) == {"body"}


def test_patch_changes_only_the_fields_sent(api, make):
    blogmark = make.blogmark("Keep", link_url="https://example.com/keep", commentary="Old", tags=["a"])
    response = api.patch(f"/api/blogmarks/{blogmark.pk}", {"commentary": "New *words*"})
    assert response.status_code == 200
    assert response.json()["html"] == "<p>New <em>words</em></p>"
    blogmark.refresh_from_db()
    assert (blogmark.link_title, blogmark.link_url, blogmark.commentary) == ("Keep", "https://example.com/keep", "New *words*")
    assert [tag.tag for tag in blogmark.tags.all()] == ["a"]
    api.patch(f"/api/blogmarks/{blogmark.pk}", {"tags": ["b", "c"], "is_draft": True})
    blogmark.refresh_from_db()
    assert blogmark.is_draft and [tag.tag for tag in blogmark.tags.all()] == ["b", "c"]


def test_delete_removes_the_post(api, make):
    quotation = make.quotation(source="Gone")
    assert api.delete(f"/api/quotations/{quotation.pk}").status_code == 204
    assert not Quotation.objects.exists()
    assert api.delete(f"/api/quotations/{quotation.pk}").status_code == 404


# --- Errors: 422 with the field and the reason, 404, 409, 400; never a 500 ---------------------


@pytest.mark.parametrize(
    "url, payload, field",
    [
        ("/api/blogmarks", {"link_url": "not a url", "link_title": "x"}, "link_url"),
        ("/api/blogmarks", {"link_url": "javascript:alert(1)", "link_title": "x"}, "link_url"),
        ("/api/blogmarks", {"link_url": "https://exa mple.com/", "link_title": "x"}, "link_url"),
        ("/api/blogmarks", {"link_url": "https://not<a>host/", "link_title": "x"}, "link_url"),
        ("/api/blogmarks", {"link_url": "https://example.com/", "link_title": "x", "via_url": "ftp://example.com/"}, "via_url"),
        ("/api/quotations", {"quotation": "q", "source": "s", "source_url": "data:text/html,hi"}, "source_url"),
        ("/api/entries", {"body": "no title"}, "title"),
        ("/api/entries", {"title": "", "body": "empty title"}, "title"),
        ("/api/entries", {"title": 42, "body": "wrong type"}, "title"),
        ("/api/entries", {"title": "x" * 256, "body": "too long"}, "title"),
        ("/api/blogmarks", {"link_url": "https://example.com/" + "a" * 1000, "link_title": "x"}, "link_url"),
        ("/api/entries", {"title": "t", "body": "b", "tags": ["not a tag"]}, "tags.0"),
        ("/api/entries", {"title": "t", "body": "b", "tags": ["ok", "x" * 65]}, "tags.1"),
        ("/api/entries", {"title": "t", "body": "b", "tags": "django"}, "tags"),
        ("/api/entries", {"title": "t", "body": "b", "slug": "Not a slug!"}, "slug"),
        ("/api/entries", {"title": "t", "body": "b", "created": "last tuesday"}, "created"),
        ("/api/entries", {"title": "t", "body": "b", "created": "0001-01-01T00:00:00+01:00"}, "created"),
        ("/api/entries", {"title": "t", "body": "b", "is_draft": "perhaps"}, "is_draft"),
        ("/api/entries", {"title": "nul \u0000 inside", "body": "b"}, "title"),
        ("/api/entries", {"title": "t", "body": "b", "is_draft": 0}, "is_draft"),
        ("/api/entries", {"title": "t", "body": "b", "created": "2024-05-01T12:00:00"}, "created"),
        ("/api/entries", {"title": "t", "body": "b", "created": 1714564800}, "created"),
        ("/api/entries", [{"title": "t", "body": "b"}], "body"),
    ],
)
def test_invalid_payloads_get_422_naming_the_field(api, url, payload, field):
    response = api.post(url, payload)
    assert response.status_code == 422, response.content
    assert field in fields_at_fault(response)
    assert response.json()["detail"]
    assert not Entry.objects.exists() and not Blogmark.objects.exists() and not Quotation.objects.exists()


def test_a_lone_surrogate_is_a_422_not_a_crash(api):
    response = api.post("/api/entries", raw='{"title": "bad \\ud800", "body": "b"}')
    assert response.status_code == 422
    assert fields_at_fault(response) == {"title"}


def test_malformed_json_is_a_400(api):
    response = api.post("/api/entries", raw="{not json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_unknown_ids_are_404(api):
    for kind in ("entries", "blogmarks", "quotations"):
        assert api.get(f"/api/{kind}/12345").status_code == 404
        assert api.patch(f"/api/{kind}/12345", {}).status_code == 404
        assert api.delete(f"/api/{kind}/12345").status_code == 404
    assert "No entry with id 12345" in api.get("/api/entries/12345").json()["detail"]
    assert api.get("/api/entries/99999999999999999999999").status_code == 422


def test_a_slug_clash_on_the_same_day_is_a_409_and_changes_nothing(api, make):
    make.entry("First", slug="same", created=at(2024, 4, 1, 9))
    clash = api.post("/api/entries", {"title": "Second", "body": "b", "slug": "same", "created": "2024-04-01T18:00:00Z", "tags": ["t"]})
    assert clash.status_code == 409
    assert "same" in clash.json()["detail"]
    assert Entry.objects.count() == 1 and not Tag.objects.exists()
    other_day = api.post("/api/entries", {"title": "Second", "body": "b", "slug": "same", "created": "2024-04-02T18:00:00Z"})
    assert other_day.status_code == 201
    other_kind = api.post("/api/quotations", {"quotation": "q", "source": "s", "slug": "same", "created": "2024-04-01T18:00:00Z"})
    assert other_kind.status_code == 409  # one permalink, whatever the kind
    assert other_kind.json()["errors"] == [{"field": "slug", "message": "Another entry on this day already uses the slug “same”."}]


def test_a_failed_edit_leaves_the_post_and_its_tags_alone(api, make):
    entry = make.entry("Title", tags=["keep"])
    response = api.patch(f"/api/entries/{entry.pk}", {"title": "", "tags": ["new"]})
    assert response.status_code == 422
    entry.refresh_from_db()
    assert entry.title == "Title" and [tag.tag for tag in entry.tags.all()] == ["keep"]
    assert not Tag.objects.filter(tag="new").exists()


def test_patch_refuses_null_for_a_required_field(api, make):
    entry = make.entry("Title")
    response = api.patch(f"/api/entries/{entry.pk}", {"title": None})
    assert response.status_code == 422
    assert fields_at_fault(response) == {"title"}


# --- Authentication and permissions -------------------------------------------------------------


def test_writes_without_a_token_are_401_with_a_message(anon):
    response = anon.post("/api/entries", {"title": "t", "body": "b"})
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not Entry.objects.exists()


def test_a_bad_or_revoked_token_is_401_even_for_reads(client, token, make):
    make.entry("Public")
    bad = Api(client, "lb_not-a-real-token")
    assert bad.post("/api/entries", {"title": "t", "body": "b"}).status_code == 401
    assert bad.get("/api/items").status_code == 401
    ApiToken.objects.update(is_active=False)
    revoked = Api(client, token)
    response = revoked.post("/api/entries", {"title": "t", "body": "b"})
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_a_token_of_a_user_without_permission_is_403(client, django_user_model, make):
    reader = django_user_model.objects.create_user("reader", password="pw")
    api = Api(client, ApiToken.issue(reader))
    entry = make.entry("E")
    response = api.post("/api/entries", {"title": "t", "body": "b"})
    assert response.status_code == 403
    assert "linkblog.add_entry" in response.json()["detail"]
    assert api.patch(f"/api/entries/{entry.pk}", {"title": "x"}).status_code == 403
    assert api.delete(f"/api/entries/{entry.pk}").status_code == 403
    assert api.post("/api/tags/x/rename", {"to": "y"}).status_code == 403
    reader.user_permissions.add(Permission.objects.get(codename="add_entry"))
    assert api.post("/api/entries", {"title": "t", "body": "b"}).status_code == 201


def test_token_use_is_recorded(api, token):
    assert ApiToken.objects.get().last_used_at is None
    api.get("/api/items")
    assert ApiToken.objects.get().last_used_at is not None


def test_only_the_hash_of_a_token_is_stored(token):
    stored = ApiToken.objects.get()
    assert token not in stored.token_hash and len(stored.token_hash) == 64
    assert stored.token_hash == ApiToken.hash(token)


def test_a_staff_session_can_write_with_its_csrf_token(admin_user):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    payload = json.dumps({"title": "From the browser", "body": "b"})
    without_csrf = browser.post("/api/entries", payload, content_type="application/json")
    assert without_csrf.status_code == 403
    page = browser.get("/api/docs")
    csrf = browser.cookies["csrftoken"].value
    assert page.status_code == 200
    with_csrf = browser.post("/api/entries", payload, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert with_csrf.status_code == 201
    assert browser.get("/api/items", {"is_draft": "false"}).status_code == 200


def test_a_session_of_a_non_staff_user_is_not_enough(django_user_model):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    payload = json.dumps({"title": "t", "body": "b"})
    assert browser.post("/api/entries", payload, content_type="application/json").status_code == 401
    browser.force_login(django_user_model.objects.create_user("someone", password="pw"))
    assert browser.post("/api/entries", payload, content_type="application/json").status_code == 401


def test_the_admin_lists_tokens_without_showing_them_and_revokes(client, admin_user, token):
    client.force_login(admin_user)
    listing = client.get("/admin/linkblog/apitoken/")
    assert listing.status_code == 200
    assert "tests" in listing.content.decode() and token not in listing.content.decode()
    assert ApiToken.objects.get().token_hash not in listing.content.decode()
    pk = ApiToken.objects.get().pk
    response = client.post("/admin/linkblog/apitoken/", {"action": "revoke", "_selected_action": [pk]})
    assert response.status_code == 302
    assert ApiToken.objects.get().is_active is False


# --- Tags: list, describe, rename, merge --------------------------------------------------------


def test_tags_are_listed_with_counts_by_name_or_by_count(anon, make):
    make.entry("E1", tags=["python", "django"])
    make.entry("E2", tags=["python"])
    make.blogmark("B", tags=["python", "apple"])
    make.entry("Draft", tags=["apple"], is_draft=True)
    by_name = anon.get("/api/tags").json()
    assert [(tag["tag"], tag["post_count"]) for tag in by_name["items"]] == [("apple", 1), ("django", 1), ("python", 3)]
    by_count = anon.get("/api/tags", sort="count").json()
    assert [tag["tag"] for tag in by_count["items"]] == ["python", "apple", "django"]
    assert by_count["count"] == 3
    assert anon.get("/api/tags", sort="popularity").status_code == 422


def test_read_and_describe_a_tag(api, anon, make):
    make.entry("E", tags=["django"])
    assert anon.get("/api/tags/django").json()["post_count"] == 1
    assert anon.get("/api/tags/nope").status_code == 404
    response = api.patch("/api/tags/django", {"description": "The *web* framework"})
    assert response.status_code == 200
    assert response.json()["description_html"] == "<p>The <em>web</em> framework</p>"
    assert anon.patch("/api/tags/django", {"description": "x"}).status_code == 401


def test_renaming_a_tag_keeps_its_posts_and_redirects_the_old_page(api, client, make):
    make.entry("E", tags=["js"])
    response = api.post("/api/tags/js/rename", {"to": "JavaScript"})
    assert response.status_code == 200
    assert response.json()["tag"] == "javascript" and response.json()["post_count"] == 1
    old_page = client.get("/tags/js/")
    assert old_page.status_code == 301
    assert old_page["Location"] == "/tags/javascript/"
    assert client.get("/tags/javascript/").status_code == 200
    assert [tag.tag for tag in Entry.objects.get().tags.all()] == ["javascript"]
    # In a combination of tags too, keeping the page asked for.
    make.entry("Both", tags=["javascript", "python"])
    combined = client.get("/tags/js+python/", {"page": "1"})
    assert combined.status_code == 301 and combined["Location"] == "/tags/javascript+python/?page=1"
    assert client.get("/tags/javascript+python/").status_code == 200
    # Renamed again, the oldest name still lands on the current page.
    api.post("/api/tags/javascript/rename", {"to": "ecmascript"})
    assert client.get("/tags/js/")["Location"] == "/tags/ecmascript/"
    assert client.get("/tags/javascript/")["Location"] == "/tags/ecmascript/"


def test_renaming_onto_an_existing_tag_is_a_409(api, make):
    make.entry("E", tags=["a", "b"])
    response = api.post("/api/tags/a/rename", {"to": "b"})
    assert response.status_code == 409
    assert "merge" in response.json()["detail"]
    assert api.post("/api/tags/nope/rename", {"to": "c"}).status_code == 404
    assert api.post("/api/tags/a/rename", {"to": "not ok"}).status_code == 422


def test_merging_a_tag_moves_its_posts_and_redirects(api, client, make):
    both = make.entry("Both", tags=["py", "python"])
    only_old = make.blogmark("Old only", tags=["py"])
    make.quotation(source="New only", tags=["python"])
    response = api.post("/api/tags/py/merge", {"into": "python"})
    assert response.status_code == 200
    assert response.json()["post_count"] == 3
    assert not Tag.objects.filter(tag="py").exists()
    assert [tag.tag for tag in both.tags.all()] == ["python"]
    assert [tag.tag for tag in only_old.tags.all()] == ["python"]
    assert client.get("/tags/py/")["Location"] == "/tags/python/"
    assert TagRedirect.objects.get().old_tag == "py"
    assert api.post("/api/tags/python/merge", {"into": "python"}).status_code == 422
    assert api.post("/api/tags/python/merge", {"into": "nope"}).status_code == 404


def test_a_tag_page_without_tag_or_redirect_is_still_a_404(client):
    assert client.get("/tags/never-existed/").status_code == 404


# --- Contract and docs --------------------------------------------------------------------------


def test_the_openapi_schema_describes_every_endpoint_auth_and_errors(anon):
    schema = anon.get("/api/openapi.json").json()
    paths = schema["paths"]
    for kind in ("entries", "blogmarks", "quotations"):
        assert set(paths[f"/api/{kind}"]) == {"get", "post"}
        assert set(paths[f"/api/{kind}/{{post_id}}"]) == {"get", "put", "patch", "delete"}
    assert {"/api/items", "/api/tags", "/api/tags/{tag}", "/api/tags/{tag}/rename", "/api/tags/{tag}/merge"} <= set(paths)
    assert schema["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer"}
    create = paths["/api/entries"]["post"]
    assert {"401", "403", "409", "422"} <= set(create["responses"])
    assert {} not in create["security"]
    assert {} in paths["/api/items"]["get"]["security"]  # public read: auth optional


def test_the_docs_page_loads_nothing_from_other_hosts(anon):
    response = anon.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets)
    assert all(url.startswith("/") for url in assets), assets
    assert '"validatorUrl": null' in html


@pytest.mark.django_db(transaction=True)
def test_the_docs_page_works_in_chromium_without_any_other_host(page, live_server, artifacts):
    elsewhere = []

    def only_this_site(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_site)
    page.goto(f"{live_server.url}/api/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() == 24  # every operation is listed
    assert "linkblog API" in page.locator(".info").first.inner_text()
    page.screenshot(path=str(artifacts / "api-docs.png"), full_page=False)
    assert elsewhere == []


# --- The token command --------------------------------------------------------------------------


def run_token_command(*args, database):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database, "HOME": str(ROOT)}
    return subprocess.run([sys.executable, "linkblog.py", "token", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def command_database(tmp_path):
    """A migrated SQLite file of its own, for commands that run in another process."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "HOME": str(ROOT)}
    subprocess.run([sys.executable, "-m", "nanodjango", "manage", "linkblog.py", "migrate", "--no-input"], cwd=ROOT,
                   env=env, check=True, capture_output=True, timeout=120)
    create_user = "from django.contrib.auth.models import User; User.objects.create_user('writer')"
    subprocess.run([sys.executable, "-m", "nanodjango", "manage", "linkblog.py", "shell", "-c", create_user], cwd=ROOT,
                   env=env, check=True, capture_output=True, timeout=120)
    return url


def test_the_token_command_prints_a_working_token_once(command_database):
    result = run_token_command("writer", "--name", "phone", database=command_database)
    assert result.returncode == 0, result.stderr
    raw_token = result.stdout.strip()
    assert raw_token.startswith("lb_") and len(raw_token) > 40
    check = ("from linkblog import ApiToken; t = ApiToken.objects.get(); "
             f"print(t.name, t.user.username, t.token_hash == ApiToken.hash('{raw_token}'))")
    shown = subprocess.run([sys.executable, "-m", "nanodjango", "manage", "linkblog.py", "shell", "-c", check], cwd=ROOT,
                           env={"PATH": "/usr/bin:/bin", "DATABASE_URL": command_database, "HOME": str(ROOT)},
                           capture_output=True, text=True, timeout=120)
    assert shown.stdout.splitlines()[-1].split() == ["phone", "writer", "True"]


def test_the_token_command_refuses_an_unknown_user_in_one_line(command_database):
    result = run_token_command("nobody", database=command_database)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == "linkblog: no user named “nobody”."
