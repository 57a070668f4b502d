"""The engine of issue 17 (blogworks.signatures, .activitypub, .webmention) against local stand-ins.

Nothing leaves 127.0.0.1: tests/fediverse_server.py plays the Mastodon-like server, the pages with
Webmention endpoints and the WebSub hub; a CaptureServer plays the blog's views where needed.
"""

import json
from email.utils import parsedate_to_datetime

import pytest
from fediverse_server import CaptureServer, FediverseServer

from blogworks import activitypub as ap
from blogworks import netfetch, signatures, webmention
from blogworks.signatures import SignatureError

INBOX = "http://blog.test/inbox"


@pytest.fixture(scope="module")
def keys():
    return signatures.generate_key_pair()


@pytest.fixture(scope="module")
def other_keys():
    return signatures.generate_key_pair()


@pytest.fixture(scope="module")
def fedi():
    server = FediverseServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    """Each test starts with an empty record and a server that answers."""
    if "fedi" in request.fixturenames:
        server = request.getfixturevalue("fedi")
        server.deliveries.clear(), server.webmentions.clear(), server.pings.clear()
        server.mode = "ok"


def signed(keys, body=b'{"a": 1}', url=INBOX, key_id="https://me.test/actor#main-key", method="POST"):
    headers = {"Content-Type": "application/activity+json"}
    headers.update(signatures.sign_request(method, url, headers, body, key_id, keys[0]))
    return headers


def verify(headers, body=b'{"a": 1}', pem=None, path="/inbox", **kwargs):
    return signatures.verify_request("POST", path, headers, body, lambda key_id: pem, **kwargs)


# --- HTTP Signatures -------------------------------------------------------------------------


def test_sign_then_verify_round_trip(keys):
    headers = signed(keys)
    assert 'headers="(request-target) host date digest"' in headers["Signature"]
    assert verify(headers, pem=keys[1]) == "https://me.test/actor#main-key"


def test_signed_get_without_body_verifies(keys):
    headers = signatures.sign_request("GET", "http://blog.test/actor?x=1", {}, None, "k", keys[0])
    assert "Digest" not in headers
    assert signatures.verify_request("GET", "/actor?x=1", headers, b"", lambda k: keys[1]) == "k"


def test_forged_signature_refused(keys, other_keys):
    with pytest.raises(SignatureError, match="bad signature"):
        verify(signed(other_keys), pem=keys[1])


def test_signature_for_another_path_refused(keys):
    with pytest.raises(SignatureError, match="bad signature"):
        verify(signed(keys), pem=keys[1], path="/other-inbox")


def test_tampered_body_refused(keys):
    with pytest.raises(SignatureError, match="Digest does not match"):
        verify(signed(keys), body=b'{"a": 2}', pem=keys[1])


def test_old_and_future_dates_refused(keys):
    headers = signed(keys)
    sent = parsedate_to_datetime(headers["Date"]).timestamp()  # not time.time(): a slow machine would drift
    with pytest.raises(SignatureError, match="too old"):
        verify(headers, pem=keys[1], now=sent + 301)
    with pytest.raises(SignatureError, match="too far in the future"):
        verify(headers, pem=keys[1], now=sent - 301)


def test_missing_headers_and_unknown_key_refused(keys):
    headers = signed(keys)
    for name, message in (("Signature", "missing Signature"), ("Date", "missing Date"), ("Digest", "missing Digest")):
        with pytest.raises(SignatureError, match=message):
            verify({k: v for k, v in headers.items() if k != name}, pem=keys[1])
    with pytest.raises(SignatureError, match="unknown key"):
        verify(headers, pem=None)


def test_signature_not_covering_required_headers_refused(keys):
    headers = signed(keys)
    headers["Signature"] = headers["Signature"].replace("(request-target) host date digest", "host date")
    with pytest.raises(SignatureError, match=r"not signed: \(request-target\), digest"):
        verify(headers, pem=keys[1])


def test_malformed_signature_header_refused(keys):
    with pytest.raises(SignatureError, match="malformed"):
        verify({**signed(keys), "Signature": "keyId=unquoted"}, pem=keys[1])


# --- ActivityPub: the blog (a CaptureServer using the engine as the views will) and alice --------

POST = {
    "id": "http://blog.test/2024/Jan/2/a-post/",
    "url": "http://blog.test/2024/Jan/2/a-post/",
    "title": "A linked page",
    "content_html": "<p>Worth reading.</p>",
    "link": "https://example.org/page",
    "tags": [{"name": "django-ninja", "url": "http://blog.test/tags/django-ninja/"}],
    "published": "2024-01-02T03:04:05Z",
}


class Blog:
    """The view logic issue 17 asks for, in miniature: serve the actor, take Follow/Undo/Delete/
    replies at the inbox after checking the signature, answer Follows with a signed Accept."""

    def __init__(self, keys):
        self.private_pem, self.public_pem = keys
        self.server = CaptureServer(self.respond).start()
        self.actor_url = self.server.url("/actor")
        self.followers, self.replies, self.lookup = {}, [], ap.key_lookup(timeout=5)

    def actor(self):
        s = self.server
        return ap.actor_document(self.actor_url, "author", "The Blog", "Links.", s.url("/inbox"), s.url("/outbox"), s.url("/followers"), self.public_pem)

    def respond(self, method, path, headers, body):
        if method == "GET" and path == "/actor":
            return 200, self.actor()
        if method == "POST" and path == "/inbox":
            return self.inbox(headers, body)
        return 404, "not found"

    def inbox(self, headers, body):
        try:
            activity = ap.parse_inbox_activity(body)
            key_id = signatures.verify_request("POST", "/inbox", headers, body, self.lookup)
        except ap.InboxError as error:
            return error.status, str(error)
        except SignatureError as error:
            return 401, str(error)
        if self.lookup.cache[key_id][0] != activity.actor:
            return 401, "signed by someone other than the actor"
        return self.handle(activity)

    def handle(self, activity):
        if activity.kind == "follow" and activity.object_id == self.actor_url:
            follower = ap.fetch_actor(activity.actor, timeout=5)
            self.followers[activity.actor] = follower.inbox
            self.deliver(follower.inbox, ap.accept(activity.activity, self.actor_url))
        elif activity.kind in ("unfollow", "delete_actor"):
            self.followers.pop(activity.actor, None)
        elif activity.kind == "reply":
            self.replies.append(activity.reply)
        return 202, ""

    def deliver(self, inbox, activity, timeout=5):
        return ap.deliver(inbox, activity, ap.key_id(self.actor_url), self.private_pem, timeout=timeout)


@pytest.fixture(scope="module")
def blog(keys):
    blog = Blog(keys)
    yield blog
    blog.server.stop()


def test_follow_publish_edit_delete_reply_unfollow(fedi, blog):
    status, follow = fedi.send_follow(blog.server.url("/inbox"), blog.actor_url)
    assert status == 202 and blog.followers == {fedi.actor_url: fedi.inbox_url}
    accepted = fedi.deliveries[-1]
    assert accepted["verified"], accepted["error"]
    assert accepted["activity"]["type"] == "Accept" and accepted["activity"]["object"]["id"] == follow["id"]

    for activity in (
        ap.article(POST, blog.actor_url, blog.server.url("/followers")),
        ap.update_activity({**POST, "updated": "2024-01-03T00:00:00Z"}, blog.actor_url, blog.server.url("/followers")),
        ap.delete_activity(POST["id"], blog.actor_url, blog.server.url("/followers")),
    ):
        assert blog.deliver(fedi.inbox_url, activity) == 202
        received = fedi.deliveries[-1]
        assert received["verified"], received["error"]
        assert received["problems"] == [], received["problems"]
    assert [d["activity"]["type"] for d in fedi.deliveries] == ["Accept", "Create", "Update", "Delete"]

    status, reply = fedi.send_reply(blog.server.url("/inbox"), POST["id"], "<p>Nice one</p>")
    assert status == 202 and blog.replies[-1].in_reply_to == POST["id"]
    assert blog.replies[-1].content_html == "<p>Nice one</p>" and blog.replies[-1].actor == fedi.actor_url

    assert fedi.send_undo(blog.server.url("/inbox"), follow) == 202
    assert blog.followers == {}


def test_forged_follow_refused_by_the_blog(fedi, blog, other_keys):
    """A Follow claiming alice's key but signed with another key never makes a follower."""
    activity = fedi.follow(blog.actor_url)
    body = json.dumps(activity).encode()
    headers = {"Content-Type": "application/activity+json"}
    headers.update(signatures.sign_request("POST", blog.server.url("/inbox"), headers, body, fedi.key_id, other_keys[0]))
    assert fedi.post(blog.server.url("/inbox"), activity, headers=headers) == 401
    assert blog.followers == {} and fedi.deliveries == []


def test_signed_by_someone_else_for_alice_refused(fedi, blog):
    """A valid signature by the blog's own key does not let it speak as alice."""
    activity = fedi.follow(blog.actor_url)
    body = json.dumps(activity).encode()
    headers = {"Content-Type": "application/activity+json"}
    headers.update(signatures.sign_request("POST", blog.server.url("/inbox"), headers, body, ap.key_id(blog.actor_url), blog.private_pem))
    assert fedi.post(blog.server.url("/inbox"), activity, headers=headers) == 401
    assert blog.followers == {}


def test_stand_in_refuses_a_delivery_signed_with_the_wrong_key(fedi, blog, other_keys):
    activity = ap.article(POST, blog.actor_url, blog.server.url("/followers"))
    ap.deliver(fedi.inbox_url, activity, ap.key_id(blog.actor_url), other_keys[0], timeout=5)
    assert not fedi.deliveries[-1]["verified"] and "InvalidSignature" in fedi.deliveries[-1]["error"]


def test_delivery_to_a_failing_or_hanging_server(fedi, blog):
    activity = ap.delete_activity(POST["id"], blog.actor_url, blog.server.url("/followers"))
    fedi.mode = "error"
    status = blog.deliver(fedi.inbox_url, activity)
    assert status == 503 and ap.should_retry(status) and not ap.should_retry(410)
    fedi.mode, fedi.hang_seconds = "hang", 1.5
    with pytest.raises(ap.DeliveryError, match="timed out"):
        blog.deliver(fedi.inbox_url, activity, timeout=0.5)
    assert ap.retry_delay(1) == 60 and ap.retry_delay(len(ap.RETRY_DELAYS) + 1) is None


def test_fetch_actor_and_webfinger(fedi):
    actor = ap.fetch_actor(fedi.actor_url, timeout=5)
    assert (actor.inbox, actor.shared_inbox) == (fedi.inbox_url, fedi.url("/inbox"))
    assert actor.public_key_id == fedi.key_id and actor.public_key_pem == fedi.public_pem
    lookup = ap.key_lookup(timeout=5)
    assert lookup(fedi.key_id) == fedi.public_pem and lookup.cache[fedi.key_id][0] == fedi.actor_url
    assert lookup(fedi.actor_url + "#a-key-alice-does-not-publish") is None
    fedi.add_page("/users/mallory", {**fedi.actor_document(), "id": fedi.actor_url})
    with pytest.raises(ap.DeliveryError, match="not the URL fetched"):
        ap.fetch_actor(fedi.url("/users/mallory"), timeout=5)

    jrd = ap.webfinger("acct:author@blog.test", "author", "blog.test", "http://blog.test/actor", "http://blog.test/")
    assert jrd["subject"] == "acct:author@blog.test"
    assert {"rel": "self", "type": "application/activity+json", "href": "http://blog.test/actor"} in jrd["links"]
    assert ap.webfinger("acct:someone@blog.test", "author", "blog.test", "http://blog.test/actor") is None


def test_post_object_carries_html_link_hashtags_and_dates():
    obj = ap.article(POST, "http://blog.test/actor", "http://blog.test/followers")["object"]
    assert obj["type"] == "Note" and obj["url"] == POST["url"] and obj["published"] == POST["published"]
    assert obj["content"].startswith("<p>Worth reading.</p>") and 'href="https://example.org/page"' in obj["content"]
    assert obj["tag"] == [{"type": "Hashtag", "href": "http://blog.test/tags/django-ninja/", "name": "#djangoninja"}]
    assert 'rel="tag"' in obj["content"]


# --- inbox bodies refused ----------------------------------------------------------------------

FOLLOW = {"id": "https://m.test/1", "type": "Follow", "actor": "https://m.test/users/a", "object": "http://blog.test/actor"}


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"x" * 300_000, 413, "larger than"),
        (b"{not json", 400, "not UTF-8 JSON"),
        (b"\xff\xfe", 400, "not UTF-8 JSON"),
        (b"[1, 2]", 400, "not a JSON object"),
        (json.dumps({**FOLLOW, "type": None}).encode(), 400, "no type"),
        (json.dumps({**FOLLOW, "actor": "javascript:alert(1)"}).encode(), 400, "actor is not"),
        (json.dumps({**FOLLOW, "object": 7}).encode(), 400, "object is not"),
        (json.dumps({**FOLLOW, "type": "Like"}).encode(), 422, "unsupported activity type"),
        (json.dumps({**FOLLOW, "type": "Create", "object": {"type": "Note", "content": "x"}}).encode(), 422, "only Create"),
        (json.dumps({**FOLLOW, "type": "Delete", "object": "https://elsewhere.test/notes/1"}).encode(), 400, "not on the actor's server"),
        (json.dumps({**FOLLOW, "type": "Undo", "object": {**FOLLOW, "actor": "https://m.test/users/b"}}).encode(), 400, "someone else"),
    ],
)
def test_bad_inbox_bodies_refused(body, status, message):
    with pytest.raises(ap.InboxError, match=message) as caught:
        ap.parse_inbox_activity(body)
    assert caught.value.status == status


def test_spoofed_reply_refused():
    note = {"id": "https://m.test/notes/1", "type": "Note", "attributedTo": "https://m.test/users/b", "inReplyTo": POST["id"], "content": "hi"}
    with pytest.raises(ap.InboxError, match="attributed to someone other"):
        ap.parse_inbox_activity(json.dumps({**FOLLOW, "type": "Create", "object": note}).encode())


# --- Webmention and WebSub ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "page, endpoint",
    [
        ("/wm/link-header", "/webmention?via=header"),  # relative Link header, ../ from /wm/
        ("/wm/link-header-multi", "/webmention?via=multi"),  # rel list, and the header beats the HTML
        ("/wm/html-link", "/webmention?via=link"),  # the commented-out one before it is ignored
        ("/wm/html-a", "/wm/webmention?via=a"),  # relative to the page's folder
        ("/wm/empty-href", "/wm/empty-href"),  # empty href: the page itself
        ("/wm/redirect", "/wm/moved/endpoint-webmention"),  # relative to the URL after the redirect
        ("/wm/none", None),
        ("/wm/missing", None),  # 404
    ],
)
def test_discover_endpoint(fedi, page, endpoint):
    assert webmention.discover_endpoint(fedi.url(page), timeout=5) == (fedi.url(endpoint) if endpoint else None)


def test_send_webmention_to_the_discovered_endpoint(fedi):
    endpoint = webmention.discover_endpoint(fedi.url("/wm/html-link"), timeout=5)
    assert webmention.send("http://blog.test/p/", fedi.url("/wm/html-link"), endpoint, timeout=5) == 202
    assert fedi.webmentions == [{"path": "/webmention?via=link", "source": "http://blog.test/p/", "target": fedi.url("/wm/html-link")}]


SOURCE = """<!doctype html><html><body><article class="h-entry">
<span class="p-author h-card"><a class="u-url p-name" href="/about">Ann Writer</a><img class="u-photo" src="/me.jpg" alt=""></span>
<div class="e-content">I replied to <a class="u-in-reply-to" href="{target}">this post</a>.</div>
<time class="dt-published" datetime="2024-02-03T04:05:06Z">3 Feb</time>
</article></body></html>"""


def test_verify_returns_the_source_h_entry(fedi):
    target = "http://blog.test/2024/Jan/2/a-post/"
    source = fedi.add_page("/wm/source", SOURCE.format(target=target))
    mention = webmention.verify(source, target, timeout=5)
    assert (mention.kind, mention.author_name, mention.author_url) == ("reply", "Ann Writer", fedi.url("/about"))
    assert mention.author_photo == fedi.url("/me.jpg") and mention.published == "2024-02-03T04:05:06Z"
    assert "this post</a>" in mention.content_html and mention.content_text.startswith("I replied")


def test_verify_refuses_a_source_not_linking_the_target(fedi):
    source = fedi.add_page("/wm/unrelated", SOURCE.format(target="http://blog.test/another-post/"))
    with pytest.raises(webmention.WebmentionError, match="does not link"):
        webmention.verify(source, "http://blog.test/2024/Jan/2/a-post/", timeout=5)
    # The target's URL as text, not as a link, does not count either.
    text_only = fedi.add_page("/wm/text-only", "<p>http://blog.test/2024/Jan/2/a-post/</p>")
    with pytest.raises(webmention.WebmentionError, match="does not link"):
        webmention.verify(text_only, "http://blog.test/2024/Jan/2/a-post/", timeout=5)


def test_verify_reports_a_deleted_source(fedi):
    gone = fedi.add_page("/wm/gone", "gone", status=410)
    with pytest.raises(webmention.WebmentionError) as caught:
        webmention.verify(gone, "http://blog.test/p/", timeout=5)
    assert caught.value.deleted


def test_validate_request():
    webmention.validate_request("https://them.test/a", "http://blog.test/p/", {"blog.test"})
    for source, target, message in (
        ("file:///etc/passwd", "http://blog.test/p/", "source is not"),
        ("https://them.test/a", "http://elsewhere.test/p/", "not on this site"),
        ("http://blog.test/p/", "http://blog.test/p/#x", "same page"),
    ):
        with pytest.raises(webmention.WebmentionError, match=message):
            webmention.validate_request(source, target, {"blog.test"})


def test_websub_ping(fedi):
    feeds = ["http://blog.test/atom/everything/", "http://blog.test/atom/entries/"]
    assert webmention.websub_ping(fedi.url("/hub"), feeds, timeout=5) == 204
    assert fedi.pings == [{"hub.mode": ["publish"], "hub.url": feeds}]


# --- the bounded client ------------------------------------------------------------------------


def test_fetch_refuses_other_schemes_and_oversized_answers(fedi):
    with pytest.raises(netfetch.FetchError, match="not an http"):
        netfetch.request("GET", "file:///etc/passwd")
    fedi.add_page("/big", "x" * 5000)
    with pytest.raises(netfetch.FetchError, match="more than 1000"):
        netfetch.request("GET", fedi.url("/big"), max_bytes=1000)
    # Without a Content-Length the read itself must stop.
    fedi.add_page("/big-unannounced", "x" * 5000, headers={"Content-Length": None})
    with pytest.raises(netfetch.FetchError, match="more than 1000 bytes"):
        netfetch.request("GET", fedi.url("/big-unannounced"), max_bytes=1000)
    # urllib itself stops at a redirect to file://, answering the 302; ftp:// it would follow.
    fedi.add_page("/to-file", "", status=302, headers={"Location": "file:///etc/passwd"})
    assert netfetch.request("GET", fedi.url("/to-file")).status == 302
    fedi.add_page("/to-ftp", "", status=302, headers={"Location": "ftp://127.0.0.1/x"})
    with pytest.raises(netfetch.FetchError, match="refusing redirect"):
        netfetch.request("GET", fedi.url("/to-ftp"))


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://localhost/", "http://[::1]/", "http://10.1.2.3/",
                                 "http://169.254.169.254/latest/meta-data/", "http://192.168.0.1/admin"])
def test_strangers_urls_on_our_own_network_are_refused(settings, url):
    """Anyone can send a Webmention naming a source, or an actor naming an inbox: without the guard
    the blog would fetch its own network's pages (a cloud's metadata service at 169.254.169.254)."""
    settings.LINKBLOG_FETCH_PRIVATE_ADDRESSES = False
    with pytest.raises(netfetch.RefusedAddress, match="not a public address"):
        netfetch.request("GET", url, timeout=2)


def test_a_webmention_source_on_our_network_is_not_fetched_and_not_retried(fedi, settings):
    settings.LINKBLOG_FETCH_PRIVATE_ADDRESSES = False
    source = fedi.add_page("/wm/private-source", SOURCE.format(target="http://blog.test/p/"))
    with pytest.raises(netfetch.RefusedAddress):
        webmention.verify(source, "http://blog.test/p/", timeout=5)
    settings.LINKBLOG_FETCH_PRIVATE_ADDRESSES = True  # the stand-in is on 127.0.0.1: allowed, it answers
    assert webmention.verify(source, "http://blog.test/p/", timeout=5).kind == "reply"


def test_a_redirect_to_our_own_network_is_refused(settings):
    settings.LINKBLOG_FETCH_PRIVATE_ADDRESSES = False
    import urllib.request

    request = urllib.request.Request("https://example.org/")
    with pytest.raises(netfetch.RefusedAddress):
        netfetch._Redirects().redirect_request(request, None, 302, "Found", {}, "http://127.0.0.1/internal")
