"""Following the blog from the fediverse, WebSub and Webmention (issue 17), end to end.

The blog runs as deployed: gunicorn on a fresh database (tests/api_server.py), and its background
jobs run in the real worker, `python linkblog.py worker --batch`, started after each step. The rest
of the world is tests/fediverse_server.py on 127.0.0.1: a Mastodon-like server whose user alice
follows, replies and checks every delivery's signature with code of its own, pages with Webmention
endpoints, and a WebSub hub. Nothing leaves 127.0.0.1.
"""

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pytest
from api_server import ApiServer
from fediverse_server import FediverseServer
from production_server import ROOT, Browser

import conftest
from blogworks.jobs import MAX_ATTEMPTS
from blogworks.signatures import generate_key_pair, sign_request

AP_TYPE = "application/activity+json"


@pytest.fixture(scope="module")
def fedi():
    server = FediverseServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def blog(fedi):
    server = ApiServer(conftest.POSTGRES)
    server.env["LINKBLOG_WEBSUB_HUB"] = fedi.url("/hub")
    # A cache of its own: the blog caches signers' keys, and a stand-in of an earlier run may have had this port.
    server.env["LINKBLOG_CACHE_DIR"] = tempfile.mkdtemp(prefix="linkblog-fedi-cache-")
    server.start()
    server.run("-m", "nanodjango", "manage", "linkblog.py", "shell", "-c",
               "from django.contrib.auth.models import User; u = User.objects.get(username='api'); "
               "u.set_password('fedi-test-pw'); u.save()")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(fedi):
    """Each test starts with empty records, a server that answers, and nothing queued."""
    fedi.deliveries.clear(), fedi.webmentions.clear(), fedi.pings.clear()
    fedi.mode = "ok"


def work(blog):
    """Run every background job that is due, as a deployment's worker does, then exit."""
    result = subprocess.run([sys.executable, "linkblog.py", "worker", "--batch"], cwd=ROOT, env=blog.env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def shell(blog, code):
    return blog.run("-m", "nanodjango", "manage", "linkblog.py", "shell", "-c", code).stdout


def follow(fedi, blog):
    """alice looks up @author@host as a Mastodon user would and follows; the worker accepts."""
    actor = fedi.look_up(f"@author@{blog.base.split('://')[1]}")
    status, follow_activity = fedi.send_follow(actor["inbox"], actor["id"])
    assert status == 202
    work(blog)
    return actor, follow_activity


def received(fedi, kind):
    """The deliveries of one activity type, each checked: signed by the blog and well-formed."""
    found = [delivery for delivery in fedi.deliveries if delivery["activity"] and delivery["activity"]["type"] == kind]
    for delivery in found:
        assert delivery["verified"], delivery["error"]
        assert delivery["problems"] == [], delivery["problems"]
    return [delivery["activity"] for delivery in found]


def post_blogmark(blog, **fields):
    payload = {"link_url": "https://example.org/", "link_title": "A linked page", "commentary": "Worth *reading*.",
               "tags": ["django-ninja"], **fields}
    status, body, _ = blog.request("POST", "/api/blogmarks", payload)
    assert status == 201, body
    return body


def http(url, body=None, headers=None):
    """(status, body) of a request made as another server would, without following redirects."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def activity_json(blog, path):
    status, body = http(blog.base + path, headers={"Accept": AP_TYPE})
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def rows(blog, model, *fields):
    code = f"import json, linkblog; print(json.dumps(list(linkblog.{model}.objects.values{fields!r}), default=str))"
    return json.loads(shell(blog, code).strip().splitlines()[-1])  # after the shell's own notes


def page(blog, path):
    status, _, html = Browser(blog.base).request(path)
    assert status == 200
    return html


def admin_action(blog, model, action, pks):
    """Tick rows in the admin's list of `model` and run an action on them, as the author does."""
    browser = Browser(blog.base).log_in("api", "fedi-test-pw")
    _, _, html = browser.request(f"/admin/linkblog/{model}/")
    data = {"csrfmiddlewaretoken": browser.csrf_token(html), "action": action, "_selected_action": pks, "index": 0}
    status, _, html = browser.request(f"/admin/linkblog/{model}/", data)
    assert status == 302, html[:2000]


def test_a_fediverse_user_follows_receives_every_change_and_their_reply_shows_once_approved(fedi, blog):
    home = page(blog, "/")
    assert '<link rel="alternate" type="application/activity+json" href="/activitypub/actor/">' in home
    actor, follow_activity = follow(fedi, blog)
    assert actor["preferredUsername"] == "author" and actor["id"] == blog.base + "/activitypub/actor/"
    [accept] = received(fedi, "Accept")
    assert accept["object"]["id"] == follow_activity["id"] and accept["actor"] == actor["id"]
    assert activity_json(blog, "/activitypub/followers/")["totalItems"] == 1

    post = post_blogmark(blog, link_url=fedi.url("/wm/html-link"), via_url=fedi.url("/wm/link-header"))
    assert fedi.deliveries[1:] == []  # nothing is sent from the request that saved the post
    work(blog)
    [create] = received(fedi, "Create")
    note = create["object"]
    assert note["url"] == post["url"] and note["id"] == f"{blog.base}/activitypub/blogmark/{post['id']}/"
    assert "<em>reading</em>" in note["content"] and f'href="{fedi.url("/wm/html-link")}"' in note["content"]
    assert note["tag"] == [{"type": "Hashtag", "href": blog.base + "/tags/django-ninja/", "name": "#djangoninja"}]
    served = activity_json(blog, note["id"].removeprefix(blog.base))
    assert served["id"] == note["id"] and served["content"] == note["content"]
    assert create in activity_json(blog, "/activitypub/outbox/?page=1")["orderedItems"]

    status, _, _ = blog.request("PATCH", f"/api/blogmarks/{post['id']}", {"commentary": "Worth re-reading."})
    work(blog)
    [update] = received(fedi, "Update")
    assert update["object"]["id"] == note["id"] and "re-reading" in update["object"]["content"]
    work(blog)
    assert len(received(fedi, "Update")) == 1  # an edit is told once

    status, reply = fedi.send_reply(actor["inbox"], note["id"], '<p>Nice one <script>alert("x")</script>'
                                                                 '<a href="javascript:alert(1)">me</a></p>')
    assert status == 202
    assert "Nice one" not in page(blog, post["url"].removeprefix(blog.base))  # not before approval
    [stored] = rows(blog, "Reply", "pk", "status")
    assert stored["status"] == "pending"
    admin_action(blog, "reply", "approve", [stored["pk"]])
    html = page(blog, post["url"].removeprefix(blog.base))
    assert "Nice one" in html and "alice@" in html and reply["object"]["url"] in html
    assert "<script" not in html.split('class="responses"')[1] and "javascript:" not in html

    status, _, _ = blog.request("DELETE", f"/api/blogmarks/{post['id']}")
    assert status == 204
    work(blog)
    [delete] = received(fedi, "Delete")
    assert delete["object"] == {"id": note["id"], "type": "Tombstone"}

    assert fedi.send_undo(actor["inbox"], follow_activity) == 202
    assert activity_json(blog, "/activitypub/followers/")["totalItems"] == 0
    post_blogmark(blog, link_title="After the unfollow")
    work(blog)
    assert len(received(fedi, "Create")) == 1  # the post after the unfollow never reached alice


def test_publishing_pings_the_hub_and_sends_webmentions_to_the_link_and_the_via(fedi, blog):
    post = post_blogmark(blog, link_title="Mentioning", link_url=fedi.url("/wm/html-link"),
                         via_url=fedi.url("/wm/link-header"), tags=["webmention"])
    work(blog)
    mentions = sorted(fedi.webmentions, key=lambda mention: mention["path"])
    assert mentions == [
        {"path": "/webmention?via=header", "source": post["url"], "target": fedi.url("/wm/link-header")},
        {"path": "/webmention?via=link", "source": post["url"], "target": fedi.url("/wm/html-link")},
    ]
    [ping] = fedi.pings
    assert ping["hub.mode"] == ["publish"]
    assert set(ping["hub.url"]) == {blog.base + "/atom/everything/", blog.base + "/atom/links/", blog.base + "/tags/webmention.atom"}
    status, headers, feed = Browser(blog.base).request("/atom/everything/")
    assert f'<link href="{fedi.url("/hub")}" rel="hub"/>' in feed


def test_drafts_are_never_delivered_pinged_or_mentioned_until_published(fedi, blog):
    actor, follow_activity = follow(fedi, blog)
    fedi.deliveries.clear()
    draft = post_blogmark(blog, link_title="Secret draft", is_draft=True, link_url=fedi.url("/wm/html-link"))
    status, _, _ = blog.request("PATCH", f"/api/blogmarks/{draft['id']}", {"commentary": "Still secret."})
    work(blog)
    assert fedi.deliveries == [] and fedi.pings == [] and fedi.webmentions == []
    assert http(f"{blog.base}/activitypub/blogmark/{draft['id']}/", headers={"Accept": AP_TYPE})[0] == 404
    assert "Secret draft" not in json.dumps(activity_json(blog, "/activitypub/outbox/?page=1"))

    blog.request("PATCH", f"/api/blogmarks/{draft['id']}", {"is_draft": False, "commentary": "Published now."})
    work(blog)
    [create] = received(fedi, "Create")
    assert "Published now." in create["object"]["content"]
    assert len(fedi.pings) == 1 and len(fedi.webmentions) == 1

    blog.request("PATCH", f"/api/blogmarks/{draft['id']}", {"is_draft": True})  # taken back
    work(blog)
    assert received(fedi, "Delete")[0]["object"]["id"] == create["object"]["id"]
    assert fedi.send_undo(actor["inbox"], follow_activity) == 202


def test_forged_and_malformed_inbox_posts_are_refused(fedi, blog):
    inbox = blog.base + "/activitypub/inbox/"
    activity = fedi.follow(blog.base + "/activitypub/actor/")
    body = json.dumps(activity).encode()
    forged = {"Content-Type": AP_TYPE, **sign_request("POST", inbox, {}, body, fedi.key_id, generate_key_pair()[0])}
    assert fedi.post(inbox, activity, headers=forged) == 401
    unsigned = {"Content-Type": AP_TYPE}
    assert fedi.post(inbox, activity, headers=unsigned) == 401
    assert fedi.post(inbox, {**activity, "actor": fedi.url("/users/bob")}) == 401  # alice's key speaking for bob
    assert activity_json(blog, "/activitypub/followers/")["totalItems"] == 0
    work(blog)
    assert fedi.deliveries == []

    assert fedi.post(inbox, {**activity, "type": "Like"}) == 422
    assert fedi.post(inbox, {**activity, "object": fedi.actor_url}) == 422  # following someone else
    for body, status in ((b"{not json", 400), (b"x" * 300_000, 413)):
        assert http(inbox, body, {"Content-Type": AP_TYPE})[0] == status
    assert http(inbox)[0] == 405


def test_a_page_that_links_a_post_shows_under_it_once_verified_and_approved(fedi, blog):
    post = post_blogmark(blog, link_title="Mentioned by others")
    work(blog)
    source = fedi.add_page("/blog/about-it", f"""<!doctype html><html><body><article class="h-entry">
        <a class="p-author h-card" href="/">Ann Writer</a>
        <div class="e-content">I liked <a href="{post['url']}">this link</a>. <img src=x onerror=alert(1)></div>
        </article></body></html>""")
    unrelated = fedi.add_page("/blog/unrelated", "<p>No link to the blog here.</p>")
    post_form = Browser(blog.base).request
    for fields in ({"source": source, "target": post["url"]}, {"source": unrelated, "target": post["url"]}):
        status, _, _ = post_form("/webmention/", fields)
        assert status == 202
    assert post_form("/webmention/", {"source": source, "target": blog.base + "/no/such/post/"})[0] == 400
    assert post_form("/webmention/", {"source": "file:///etc/passwd", "target": post["url"]})[0] == 400
    assert post_form("/webmention/", {"source": source})[0] == 400
    assert "Ann Writer" not in page(blog, post["url"].removeprefix(blog.base))

    work(blog)
    stored = rows(blog, "Mention", "pk", "source", "status")
    assert [(mention["source"], mention["status"]) for mention in stored] == [(source, "pending")]
    admin_action(blog, "mention", "approve", [stored[0]["pk"]])
    html = page(blog, post["url"].removeprefix(blog.base))
    assert "Ann Writer" in html and "this link" in html and "onerror" not in html


def test_a_server_that_keeps_failing_is_retried_then_given_up_on(fedi, blog):
    actor, follow_activity = follow(fedi, blog)
    fedi.mode = "error"
    post_blogmark(blog, link_title="Into the void")
    work(blog)
    [follower] = rows(blog, "Follower", "failing_since")
    assert follower["failing_since"]  # still a follower, marked failing, its delivery waiting to be retried
    waiting = shell(blog, "from django_tasks_db.models import DBTaskResult as T\n"
                          "print(T.objects.filter(status='READY', task_path='blogworks.federation.deliver').count())")
    assert waiting.strip().splitlines()[-1] == "1"
    # The last try of that delivery (as if five days had passed) fails too: the server is given up on.
    shell(blog, f"""from blogworks.federation import deliver
from django_tasks_db.models import DBTaskResult as T
T.objects.filter(status='READY').delete()
deliver.enqueue({fedi.url('/inbox')!r}, {{"type": "Delete"}}, attempt={MAX_ATTEMPTS - 1})""")
    work(blog)
    assert rows(blog, "Follower", "actor") == []


def test_a_follower_that_rotated_its_key_is_still_heard(fedi, blog):
    """The blog keeps a signer's key for an hour; a server that rotates its key meanwhile must not be
    refused for that hour: a signature that fails against the kept key is checked against a fresh one."""
    actor, follow_activity = follow(fedi, blog)
    assert activity_json(blog, "/activitypub/followers/")["totalItems"] == 1
    fedi.rotate_key()
    assert fedi.send_undo(actor["inbox"], follow_activity) == 202
    assert activity_json(blog, "/activitypub/followers/")["totalItems"] == 0
