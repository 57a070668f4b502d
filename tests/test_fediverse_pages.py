"""The fediverse endpoints in process (issue 17): what they answer to odd requests, rate limits, the
page cache, scheduled posts, and the microformats on our pages. The end-to-end story with a real
worker and a stand-in server is tests/test_fediverse.py."""

from datetime import timedelta

import mf2py
import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import at

from linkblog import ActorKey, Mention, Reply

pytestmark = pytest.mark.django_db

AP = {"HTTP_ACCEPT": "application/activity+json"}


def test_webfinger_knows_the_author_only(client, settings):
    settings.LINKBLOG_BASE_URL = "https://blog.example"
    found = client.get("/.well-known/webfinger", {"resource": "acct:author@blog.example"})
    assert found.status_code == 200 and found["Content-Type"] == "application/jrd+json"
    assert found.json()["links"][0]["href"] == "https://blog.example/activitypub/actor/"
    assert client.get("/.well-known/webfinger", {"resource": "acct:someone@blog.example"}).status_code == 404
    assert client.get("/.well-known/webfinger").status_code == 400
    settings.LINKBLOG_AUTHOR_HANDLE = "simon"
    assert client.get("/.well-known/webfinger", {"resource": "acct:simon@blog.example"}).status_code == 200


def test_the_actor_is_json_for_servers_and_the_home_page_for_people_and_never_cached(client):
    document = client.get("/activitypub/actor/", **AP)
    assert document.status_code == 200 and document["Content-Type"] == "application/activity+json"
    key = document.json()["publicKey"]
    assert key["publicKeyPem"] == ActorKey.current().public_pem and key["id"].endswith("/activitypub/actor/#main-key")
    assert client.get("/activitypub/actor/", **AP).json()["publicKey"] == key  # made once, then kept
    person = client.get("/activitypub/actor/")
    assert person.status_code == 302 and person["Location"] == "/"
    assert client.get("/activitypub/actor/", **AP)["X-Page-Cache"] == "miss"  # an HTML client never gets JSON


def test_the_outbox_pages_hold_published_posts_only(client, make):
    make.entry("Public one", created=at(2024, 1, 1))
    make.entry("Secret", is_draft=True)
    collection = client.get("/activitypub/outbox/").json()
    assert collection["totalItems"] == 1 and collection["first"].endswith("/activitypub/outbox/?page=1")
    page = client.get("/activitypub/outbox/?page=1").json()
    assert [item["object"]["url"].rsplit("/", 2)[-2] for item in page["orderedItems"]] == ["public-one"]
    assert client.get("/activitypub/outbox/?page=2").status_code == 404


def test_a_post_object_is_at_its_id_and_people_are_sent_to_the_permalink(client, make):
    post = make.blogmark("A link", tags=["x"])
    draft = make.blogmark("Draft link", is_draft=True)
    obj = client.get(f"/activitypub/blogmark/{post.pk}/", **AP).json()
    assert obj["type"] == "Note" and obj["url"].endswith(post.get_absolute_url())
    assert client.get(f"/activitypub/blogmark/{post.pk}/")["Location"] == post.get_absolute_url()
    assert client.get(f"/activitypub/blogmark/{draft.pk}/", **AP).status_code == 404
    assert client.get(f"/activitypub/nothing/{post.pk}/", **AP).status_code == 404


def test_inbox_and_webmention_refuse_oversized_bodies(client):
    assert client.post("/activitypub/inbox/", b"x" * 300_000, content_type="application/activity+json").status_code == 413
    assert client.post("/webmention/", "source=" + "x" * 20_000, content_type="application/x-www-form-urlencoded").status_code == 413


def test_inbox_and_webmention_answer_429_past_their_rate_limits(client, settings, make):
    settings.LINKBLOG_WEBMENTION_RATE_LIMIT = 2
    post = make.entry("Target")
    fields = {"source": "https://elsewhere.example/a", "target": settings.LINKBLOG_BASE_URL + post.get_absolute_url()}
    assert [client.post("/webmention/", fields).status_code for _ in range(3)] == [202, 202, 429]
    settings.LINKBLOG_INBOX_RATE_LIMIT = 1
    assert [client.post("/activitypub/inbox/", b"{}", content_type="application/activity+json").status_code
            for _ in range(2)] == [400, 429]


def test_a_scheduled_post_is_announced_at_its_time_not_before(make, django_capture_on_commit_callbacks):
    later = timezone.now() + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        post = make.entry("Scheduled", created=later)
    job = DBTaskResult.objects.get(task_path="blogworks.federation.announce_post")
    assert job.args_kwargs["args"] == ["entry", post.pk] and job.run_after == later


def test_pages_carry_h_entry_microformats_and_approved_responses(client, make):
    post = make.blogmark("Linked page", tags=["django"])
    Reply.objects.create(post_kind="blogmark", post_id=post.pk, note_id="https://m.example/n/1", actor="https://m.example/u/a",
                         url="https://m.example/n/1", author_name="a@m.example", content_html="<p>Shown</p>", status="approved")
    Reply.objects.create(post_kind="blogmark", post_id=post.pk, note_id="https://m.example/n/2", actor="https://m.example/u/b",
                         url="https://m.example/n/2", content_html="<p>Waiting</p>")
    Mention.objects.create(post_kind="blogmark", post_id=post.pk, source="https://s.example/", target="t",
                           url="https://s.example/", author_name="Ann", content_html="<p>Rejected</p>", status="rejected")
    html = client.get(post.get_absolute_url()).content.decode()
    assert "Shown" in html and "Waiting" not in html and "Rejected" not in html
    [entry] = [item for item in mf2py.parse(doc=html, url="http://127.0.0.1:8000/")["items"] if "h-entry" in item["type"]]
    assert entry["properties"]["category"] == ["django"] and entry["properties"]["url"]
    assert entry["properties"]["comment"][0]["properties"]["author"][0]["properties"]["name"] == ["a@m.example"]
    home = client.get("/").content.decode()
    assert '<link rel="alternate" type="application/activity+json" href="/activitypub/actor/">' in home
    assert '<link rel="webmention" href="/webmention/">' in home


def test_a_webmention_naming_a_source_on_our_network_is_dropped_not_retried(make, settings):
    """The background check of a received Webmention refuses a source on a private network for good:
    no fetch, no retry job, no mention kept."""
    from blogworks import federation

    settings.LINKBLOG_FETCH_PRIVATE_ADDRESSES = False
    post = make.entry("Mentioned")
    target = settings.LINKBLOG_BASE_URL + post.get_absolute_url()
    federation.receive_webmention.call("http://169.254.169.254/latest/meta-data/", target, "entry", post.pk)
    assert not DBTaskResult.objects.filter(task_path="blogworks.federation.receive_webmention").exists()
    assert not Mention.objects.exists()
