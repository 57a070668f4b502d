"""A tag no published post carries (only drafts do, or nothing) is not for readers: a 404 and absent
everywhere a reader or an anonymous API caller looks. One rule, linkblog.readable_tags(), says so."""

import json

import pytest
from django.contrib.auth.models import Permission

from linkblog import ApiToken, Tag, TagRedirect, export

pytestmark = pytest.mark.django_db

SECRET = "Launch plans, not yet public"


@pytest.fixture
def blog(make):
    """A published post tagged `public` and `shared`; a draft tagged `secret` (described) and `shared`."""
    make.tag("secret", description=SECRET)
    make.entry("Published", tags=["public", "shared"])
    make.entry("Unfinished", tags=["secret", "shared"], is_draft=True)
    make.tag("unused", description="A tag nothing carries yet")


def test_a_draft_only_tag_has_no_page_feed_combination_or_random_post(client, blog):
    for url in ["/tags/secret/", "/tags/secret.atom", "/tags/public+secret/", "/tags/secret+shared.atom",
                "/random/secret/", "/tags/unused/", "/tags/unused.atom"]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert SECRET not in response.content.decode() and "og:" not in response.content.decode()
    assert client.get("/tags/public+shared/").status_code == 200
    TagRedirect.objects.create(old_tag="old-name", tag=Tag.objects.get(tag="secret"))  # renamed through the API
    assert client.get("/tags/old-name/").status_code == 404  # a redirect would name the tag


def test_a_draft_only_tag_is_absent_from_the_cloud_the_sitemap_and_related_tags(client, blog):
    for url in ["/tags/", "/sitemap-tags.xml", "/sitemap-posts.xml", "/tags/shared/", "/tags/public/", "/"]:
        html = client.get(url).content.decode()
        assert "secret" not in html and "unused" not in html, url


def test_the_api_shows_draft_only_tags_only_to_callers_who_may_see_drafts(client, blog, django_user_model):
    listed = client.get("/api/tags").json()
    assert [tag["tag"] for tag in listed["items"]] == ["public", "shared"] and listed["count"] == 2
    assert client.get("/api/tags/secret").status_code == 404
    assert client.get("/api/tags?sort=count").json()["count"] == 2
    user = django_user_model.objects.create_user("author", is_staff=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user)}"}
    assert client.get("/api/tags/secret", **auth).status_code == 404  # no permissions: a reader
    codenames = ["view_tag", "view_entry", "view_blogmark", "view_quotation"]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="linkblog", codename__in=codenames))
    assert [tag["tag"] for tag in client.get("/api/tags", **auth).json()["items"]] == ["public", "secret", "shared", "unused"]
    secret = client.get("/api/tags/secret", **auth).json()
    assert secret["description"] == SECRET and secret["post_count"] == 0


def test_an_export_without_drafts_leaves_draft_only_tags_out(blog):
    records = [json.loads(line) for line in "".join(export("ndjson", include_drafts=False)).splitlines()]
    assert [record["tag"] for record in records if record["type"] == "tag"] == ["public", "shared"]
    everything = "".join(export("ndjson", include_drafts=True))
    assert SECRET in everything and '"unused"' in everything
