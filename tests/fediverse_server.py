"""A local stand-in for the outside world of issue 17: a Mastodon-like server, Webmention pages and
endpoints, and a WebSub hub, all on one threaded http.server at 127.0.0.1 on a random port.

FediverseServer has its own RSA key and user `alice`. Its signing and verifying are written here
from scratch, the way Mastodon does them, and deliberately share no code with blogworks.signatures:
a mistake made the same way on both sides of a round trip would otherwise go unnoticed.

- GET /users/alice, /.well-known/webfinger: alice's actor and JRD;
- POST /users/alice/inbox, /inbox: records each delivery with `verified` (signature checked
  against the key fetched from the sender's keyId) and `problems` (shape checks);
- look_up("@name@host"): WebFinger, then the actor, as Mastodon's search does;
- send_follow / send_undo / send_reply / send_delete_actor: signed POSTs to any inbox;
- mode "error" answers 503 to every POST, "hang" sleeps hang_seconds first (retry tests);
- /wm/...: pages whose Webmention endpoint is in a Link header, a <link>, an <a>, an empty href,
  behind a redirect, or absent; POSTs to any path ending in "webmention" are recorded;
- POST /hub records WebSub pings; add_page() serves any other document (e.g. our actor).

CaptureServer is a second, blank server whose answers a test supplies: it plays the blog.
"""

import base64
import hashlib
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

AP_TYPE = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"

WM_PAGES = {
    # path: (extra headers, body). Relative hrefs on purpose: discovery must resolve them.
    "/wm/link-header": ({"Link": '<../webmention?via=header>; rel="webmention"'}, "<p>header</p>"),
    "/wm/link-header-multi": (
        {"Link": '<https://example.invalid/s.css>; rel="stylesheet", </webmention?via=multi>; rel="other webmention"'},
        '<link rel="webmention" href="/webmention?via=not-this-one">',
    ),
    "/wm/html-link": ({}, '<!-- <link rel="webmention" href="/commented"> --><link rel="webmention" href="/webmention?via=link">'),
    "/wm/html-a": ({}, '<p><a rel="nofollow webmention" href="webmention?via=a">endpoint</a></p>'),
    "/wm/empty-href": ({}, '<link rel="webmention" href="">'),
    "/wm/moved/page": ({}, '<link rel="webmention" href="endpoint-webmention">'),
    "/wm/none": ({}, '<p>No endpoint here. <a href="/webmention">not rel</a></p>'),
}


def _pem_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, public.decode()


def _digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


class _Base(ThreadingHTTPServer):
    """A threaded server on a free port of 127.0.0.1, run in a daemon thread."""

    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.host = f"127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        """A client that timed out on purpose (the hang tests) closes early; that is not news."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def url(self, path: str) -> str:
        return self.base + path

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, body=b"", content_type="text/html; charset=utf-8", headers=None):
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body).encode(), AP_TYPE
        elif isinstance(body, str):
            body = body.encode()
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            if value is not None:  # None leaves a header out: {"Content-Length": None} streams
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _FediHandler(_Handler):
    def do_GET(self):
        srv, parts = self.server, urlsplit(self.path)
        if parts.path == "/users/alice":
            return self._answer(200, srv.actor_document())
        if parts.path == "/.well-known/webfinger":
            return self._webfinger(parse_qs(parts.query).get("resource", [""])[0])
        if parts.path == "/wm/redirect":
            return self._answer(302, headers={"Location": "/wm/moved/page"})
        if parts.path in srv.pages:
            status, headers, body = srv.pages[parts.path]
            extra = {k: v for k, v in headers.items() if k != "Content-Type"}
            return self._answer(status, body, headers["Content-Type"], extra)
        if parts.path in WM_PAGES:
            headers, body = WM_PAGES[parts.path]
            return self._answer(200, f"<!doctype html><html><head></head><body>{body}</body></html>", headers=headers)
        self._answer(404, "not found")

    def _webfinger(self, resource):
        srv = self.server
        if resource != f"acct:alice@{srv.host}":
            return self._answer(404, "no such user")
        links = [{"rel": "self", "type": AP_TYPE, "href": srv.actor_url}]
        self._answer(200, json.dumps({"subject": resource, "links": links}), "application/jrd+json")

    def do_POST(self):
        srv, path = self.server, urlsplit(self.path).path
        body = self._body()
        mode = srv.mode  # read once: a later test may reset it while this request sleeps
        if mode == "hang":
            # The client has given up by the time this wakes, so answer 503 and record nothing:
            # a late record would land in whichever test runs next.
            time.sleep(srv.hang_seconds)
        if mode in ("hang", "error"):
            return self._answer(503, "try later")
        if path in ("/users/alice/inbox", "/inbox"):
            srv.record_delivery(self.command, self.path, dict(self.headers.items()), body)
            return self._answer(202)
        if path.endswith("webmention") or path == "/wm/empty-href":
            srv.webmentions.append({"path": self.path, **{k: v[0] for k, v in parse_qs(body.decode()).items()}})
            return self._answer(202, "queued")
        if path == "/hub":
            srv.pings.append(parse_qs(body.decode()))
            return self._answer(204)
        self._answer(404, "not found")


class FediverseServer(_Base):
    """The stand-in Mastodon-like server. Start with FediverseServer().start(), stop with .stop()."""

    def __init__(self):
        super().__init__(_FediHandler)
        self.key, self.public_pem = _pem_pair()
        self.actor_url = self.url("/users/alice")
        self.inbox_url = self.url("/users/alice/inbox")
        self.key_id = self.actor_url + "#main-key"
        self.deliveries, self.webmentions, self.pings = [], [], []
        self.pages = {}
        self.mode, self.hang_seconds = "ok", 3.0
        self._ids = count(1)

    def rotate_key(self):
        """A new key under the same key id, as a server does after a leak: signs from now on."""
        self.key, self.public_pem = _pem_pair()

    def actor_document(self) -> dict:
        return {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": self.actor_url,
            "type": "Person",
            "preferredUsername": "alice",
            "name": "Alice Stand-in",
            "inbox": self.inbox_url,
            "endpoints": {"sharedInbox": self.url("/inbox")},
            "publicKey": {"id": self.key_id, "owner": self.actor_url, "publicKeyPem": self.public_pem},
        }

    def add_page(self, path, body, content_type="text/html; charset=utf-8", status=200, headers=None):
        """Serve a document at path: bytes/str as is, a dict as activity+json."""
        if isinstance(body, dict):
            body, content_type = json.dumps(body), AP_TYPE
        self.pages[path] = (status, {"Content-Type": content_type, **(headers or {})}, body)
        return self.url(path)

    # --- receiving: what Mastodon checks on an inbox POST -------------------------------------

    def record_delivery(self, method, target, headers, body):
        """Keep the delivery with the outcome of checking its signature and its shape."""
        entry = {"headers": headers, "body": body, "activity": None, "verified": False, "error": None, "problems": []}
        try:
            entry["activity"] = json.loads(body)
            owner = self.check_signature(method, target, headers, body)
            entry["verified"] = True
            entry["problems"] = activity_problems(entry["activity"], owner)
        except Exception as error:  # recorded, for the test to show
            entry["error"] = f"{type(error).__name__}: {error}"
        self.deliveries.append(entry)

    def check_signature(self, method, target, headers, body) -> str:
        """Verify a cavage signature the way Mastodon does; returns the key's owner."""
        h = {k.lower(): v for k, v in headers.items()}
        params = dict(re.findall(r'(\w+)="([^"]*)"', h["signature"]))
        signed = params["headers"].split()
        for needed in ("(request-target)", "host", "date", "digest"):
            assert needed in signed, f"{needed} not signed"
        assert h["digest"] == _digest(body), "digest mismatch"
        age = time.time() - parsedate_to_datetime(h["date"]).timestamp()
        assert abs(age) < 300, f"date off by {age}s"
        key_doc = self.fetch_json(params["keyId"].split("#")[0])
        key = key_doc["publicKey"]
        assert key["id"] == params["keyId"], "keyId not published by its actor"
        lines = [f"(request-target): {method.lower()} {target}" if n == "(request-target)" else f"{n}: {h[n]}" for n in signed]
        public = serialization.load_pem_public_key(key["publicKeyPem"].encode())
        public.verify(base64.b64decode(params["signature"]), "\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())
        return key["owner"]

    @staticmethod
    def fetch_json(url):
        request = urllib.request.Request(url, headers={"Accept": AP_TYPE})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read(1_000_000))

    # --- sending: signed activities from alice -------------------------------------------------

    def signed_headers(self, inbox_url, body: bytes) -> dict:
        parts = urlsplit(inbox_url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": parts.netloc, "Date": formatdate(usegmt=True), "Digest": _digest(body)}
        text = f"(request-target): post {target}\nhost: {headers['Host']}\ndate: {headers['Date']}\ndigest: {headers['Digest']}"
        signature = base64.b64encode(self.key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
        headers["Signature"] = (
            f'keyId="{self.key_id}",algorithm="rsa-sha256",headers="(request-target) host date digest",signature="{signature}"'
        )
        return {**headers, "Content-Type": AP_TYPE}

    def post(self, inbox_url, activity: dict, headers=None) -> int:
        """POST an activity signed by alice (or with the given headers); returns the status."""
        body = json.dumps(activity).encode()
        request = urllib.request.Request(inbox_url, data=body, method="POST", headers=headers or self.signed_headers(inbox_url, body))
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as error:
            return error.code

    def new_id(self) -> str:
        return self.url(f"/activities/{next(self._ids)}")

    def follow(self, target_actor) -> dict:
        return {"@context": "https://www.w3.org/ns/activitystreams", "id": self.new_id(), "type": "Follow", "actor": self.actor_url, "object": target_actor}

    def look_up(self, handle):
        """What a user typing @name@host into Mastodon's search sets off: WebFinger on that host,
        then the actor document it points to. Returns the actor document."""
        name, host = handle.lstrip("@").split("@", 1)
        jrd = self.fetch_json(f"http://{host}/.well-known/webfinger?resource=acct:{name}@{host}")
        self_link = next(link for link in jrd["links"] if link["rel"] == "self" and link["type"] == AP_TYPE)
        return self.fetch_json(self_link["href"])

    def send_follow(self, inbox_url, target_actor):
        """Follow target_actor; returns (status, the Follow) so a test can Undo it later."""
        activity = self.follow(target_actor)
        return self.post(inbox_url, activity), activity

    def send_undo(self, inbox_url, follow_activity) -> int:
        undo = {"@context": "https://www.w3.org/ns/activitystreams", "id": self.new_id(), "type": "Undo", "actor": self.actor_url, "object": follow_activity}
        return self.post(inbox_url, undo)

    def reply(self, in_reply_to, content_html) -> dict:
        note_id = self.url(f"/users/alice/statuses/{next(self._ids)}")
        note = {
            "id": note_id, "type": "Note", "attributedTo": self.actor_url, "inReplyTo": in_reply_to,
            "content": content_html, "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "url": note_id, "to": [PUBLIC], "cc": [self.actor_url + "/followers"],
        }
        return {"@context": "https://www.w3.org/ns/activitystreams", "id": note_id + "/activity", "type": "Create", "actor": self.actor_url, "object": note}

    def send_reply(self, inbox_url, in_reply_to, content_html):
        activity = self.reply(in_reply_to, content_html)
        return self.post(inbox_url, activity), activity

    def send_delete_actor(self, inbox_url) -> int:
        delete = {"@context": "https://www.w3.org/ns/activitystreams", "id": self.actor_url + "#delete", "type": "Delete", "actor": self.actor_url, "object": self.actor_url, "to": [PUBLIC]}
        return self.post(inbox_url, delete)


def activity_problems(activity: dict, key_owner: str) -> list[str]:
    """What Mastodon would object to in a delivered activity; empty when it is well-formed."""
    problems = []
    for needed in ("@context", "id", "type", "actor", "object"):
        if needed not in activity:
            problems.append(f"no {needed}")
    if activity.get("actor") != key_owner:
        problems.append("actor is not the signing key's owner")
    obj = activity.get("object")
    if activity.get("type") in ("Create", "Update"):
        if not isinstance(obj, dict):
            return problems + ["object is not embedded"]
        for needed in ("id", "type", "content", "attributedTo", "published", "url"):
            if not obj.get(needed):
                problems.append(f"object has no {needed}")
        if obj.get("attributedTo") != activity.get("actor"):
            problems.append("object attributed to someone else")
        if PUBLIC not in obj.get("to", []) + obj.get("cc", []):
            problems.append("object is not public")
    return problems


class _CaptureHandler(_Handler):
    def _serve(self):
        body = self._body() if self.command == "POST" else b""
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), body))
        status, answer = self.server.respond(self.command, self.path, dict(self.headers.items()), body)
        self._answer(status, answer)

    do_GET = do_POST = _serve


class CaptureServer(_Base):
    """A blank server: records requests and answers with respond(method, path, headers, body)
    -> (status, body), which the test supplies (it plays the blog's views)."""

    def __init__(self, respond=None):
        super().__init__(_CaptureHandler)
        self.requests = []
        self.respond = respond or (lambda *a: (404, "not found"))
