"""Local HTTP servers that play the web for the link checker's tests (issue 16).

Nothing leaves 127.0.0.1: each `Site` is a threaded http.server on a free port, and its paths play
the pages a link blog meets:

  /live, /echo/<anything>   200                      /not-found, /gone   404, 410
  /head-refused            405 to HEAD, 200 to GET   /head-dropped       HEAD: connection closed unanswered
  /flaky                   503, 200, 503, ...        /slow               answers after `slow_seconds`
  /chain/start             302 -> /chain/middle -> 301 -> /chain/end (200)
  /moved                   301 -> /new-home (200)    /loop/a, /loop/b    redirect to each other
  /parked                  200, "This domain is for sale"
  /to-ftp                  302 to ftp://...          /redirect?to=URL    302 to URL (another host)
  /endless                 405 to HEAD, GET streams bytes until the client hangs up
  /polite/<n>              200 after `hold_seconds`, for concurrency counts

Each site records every request (method, raw path, headers, start time) and the most requests it
had in flight at once; sites can share a `Tracker` to count concurrency across sites.
`Archive` is a stand-in for the Wayback Machine's Save Page Now and availability API.
The fixtures `site`, `other_host` (a second site, named localhost) and `web_archive` run one each
for a test (conftest.py loads this module as a plugin).

DNS failure without network: host `nonexistent.invalid` (RFC 2606: .invalid never resolves, and
the resolver says so at once, offline too). Connection refused: `closed_port_url()`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

DEAD_HOST_URL = "http://nonexistent.invalid/page"


@dataclass
class Seen:
    method: str
    path: str  # the raw request target, as it came over the wire
    headers: dict
    started: float  # time.monotonic()


class Tracker:
    """Counts requests in flight (across every site sharing it) and the most seen at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def enter(self):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self):
        with self.lock:
            self.active -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a slow or endless response


class _Base:
    """A threaded server on 127.0.0.1:<free port>, started and stopped by a fixture."""

    def __init__(self, host="127.0.0.1"):
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self._handler_class())
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"

    def _handler_class(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                site._record(self)
                site.handle(self)

            do_GET = do_POST = do_HEAD

        return Handler

    def _record(self, handler):
        with self.lock:
            self.requests.append(Seen(handler.command, handler.path, dict(handler.headers), time.monotonic()))

    def start(self):
        # A short poll interval: shutdown() waits up to one interval.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()  # wakes slow handlers
        self.server.shutdown()
        self.server.server_close()

    def paths(self, method=None):
        with self.lock:
            return [seen.path for seen in self.requests if method is None or seen.method == method]


def send(handler, status, body=b"", headers=None):
    """One complete response; HEAD gets the headers only."""
    if isinstance(body, str):
        body = body.encode()
    handler.send_response(status)
    headers = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
    headers.update({"Content-Length": str(len(body)), "Connection": "close"})
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)
    handler.close_connection = True


PARKED_PAGE = """<html><head><title>example-expired.com</title></head><body>
<h1>This domain is for sale!</h1><p>Buy this domain today. Domain parking by a parking company.</p>
</body></html>"""


class Site(_Base):
    """A web site playing live, dead, flaky, slow, moved, looping and parked pages."""

    def __init__(self, host="127.0.0.1", tracker: Tracker | None = None, slow_seconds=5.0, hold_seconds=0.0):
        super().__init__(host)
        self.tracker = tracker or Tracker()
        self.slow_seconds = slow_seconds
        self.hold_seconds = hold_seconds
        self.flaky_count = 0

    def handle(self, h):
        path = urlsplit(h.path).path
        routes = {
            "/live": lambda: send(h, 200, "<p>alive</p>"),
            "/new-home": lambda: send(h, 200, "<p>the new home</p>"),
            "/chain/end": lambda: send(h, 200, "<p>end of the chain</p>"),
            "/not-found": lambda: send(h, 404, "nope"),
            "/gone": lambda: send(h, 410, "gone for good"),
            "/head-refused": lambda: send(h, 405 if h.command == "HEAD" else 200, "<p>GET only</p>"),
            "/chain/start": lambda: send(h, 302, headers={"Location": "/chain/middle"}),
            "/chain/middle": lambda: send(h, 301, headers={"Location": f"{self.url}/chain/end"}),
            "/moved": lambda: send(h, 301, headers={"Location": "/new-home"}),
            "/moved-twice": lambda: send(h, 308, headers={"Location": "/moved"}),
            "/loop/a": lambda: send(h, 302, headers={"Location": "/loop/b"}),
            "/loop/b": lambda: send(h, 302, headers={"Location": "/loop/a"}),
            "/to-ftp": lambda: send(h, 302, headers={"Location": "ftp://files.example/file.txt"}),
            "/parked": lambda: send(h, 200, PARKED_PAGE),
        }
        if path in routes:
            return routes[path]()
        if path.startswith("/echo/"):
            return send(h, 200, "<p>echo</p>")
        if path == "/redirect":
            return send(h, 302, headers={"Location": parse_qs(urlsplit(h.path).query)["to"][0]})
        special = {"/flaky": self._flaky, "/slow": self._slow, "/head-dropped": self._head_dropped,
                   "/endless": self._endless}
        if path in special:
            return special[path](h)
        if path.startswith("/polite/"):
            return self._polite(h)
        send(h, 404, "no such page")

    def _flaky(self, h):
        with self.lock:
            self.flaky_count += 1
            failing = self.flaky_count % 2 == 1
        send(h, 503 if failing else 200, "busy" if failing else "fine")

    def _slow(self, h):
        self.stopping.wait(self.slow_seconds)
        send(h, 200, "finally")

    def _head_dropped(self, h):
        if h.command == "HEAD":
            h.close_connection = True  # hang up without a word, as some servers do to HEAD
            return
        send(h, 200, "<p>GET works</p>")

    def _endless(self, h):
        if h.command == "HEAD":
            return send(h, 405)
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.end_headers()
        try:
            while not self.stopping.is_set():
                h.wfile.write(b"<p>more</p>" * 1000)
        except OSError:  # the client hung up: what a bounded reader does
            pass
        h.close_connection = True

    def _polite(self, h):
        # Counted as in flight until just before answering, so a client that starts a new request
        # as soon as it has the answer is never seen as one too many.
        self.tracker.enter()
        try:
            self.stopping.wait(self.hold_seconds)
        finally:
            self.tracker.leave()
        send(h, 200, "<p>polite</p>")


class Archive(_Base):
    """A stand-in web archive: GET /save/<url> and GET /wayback/available?url=<url>.

    mode: "content-location" (200 + Content-Location, as Save Page Now does), "redirect" (302 to
    the snapshot), "queued" (200 without an address), "rate-limited" (429), "slow" (answers after
    slow_seconds). `snapshots` maps URL -> timestamp for the availability API."""

    TIMESTAMP = "20240101000000"

    def __init__(self, mode="content-location", slow_seconds=5.0):
        super().__init__()
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.snapshots: dict[str, str] = {}
        self.saved: list[str] = []  # the URLs asked to be saved, as the archive read them

    def handle(self, h):
        if h.path.startswith("/save/"):
            return self._save(h)
        parts = urlsplit(h.path)
        if parts.path == "/wayback/available":
            return self._available(h, parse_qs(parts.query).get("url", [""])[0])
        send(h, 404, "no such page")

    def _save(self, h):
        raw_target = h.path[len("/save/"):]
        target = unquote(raw_target)
        with self.lock:
            self.saved.append(target)
        snapshot = f"/web/{self.TIMESTAMP}/{raw_target}"
        if self.mode == "slow":
            self.stopping.wait(self.slow_seconds)
        if self.mode == "rate-limited":
            return send(h, 429, "Too Many Requests")
        if self.mode == "redirect":
            return send(h, 302, headers={"Location": snapshot})
        if self.mode == "queued":
            return send(h, 200, '<script>spn.watchJob("spn2-abc", "/_static/", 6000);</script>')
        self.snapshots[target] = self.TIMESTAMP
        send(h, 200, "<p>saved</p>", headers={"Content-Location": snapshot})

    def _available(self, h, url):
        with self.lock:
            timestamp = self.snapshots.get(url)
        snapshots = {}
        if timestamp:
            # The real API answers http:// snapshot URLs.
            snapshots["closest"] = {"available": True, "status": "200", "timestamp": timestamp,
                                    "url": f"http://127.0.0.1:{self.port}/web/{timestamp}/{url}"}
        body = json.dumps({"url": url, "archived_snapshots": snapshots})
        send(h, 200, body, headers={"Content-Type": "application/json"})


def closed_port_url(path="/"):
    """A URL on 127.0.0.1 where nothing listens: connection refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# Fixtures, for every test module (conftest.py's pytest_plugins).


def running(server):
    server.start()
    yield server
    server.stop()


@pytest.fixture
def site():
    yield from running(Site())


@pytest.fixture
def other_host():
    """A second site under another host name (localhost), for redirects that leave the site."""
    yield from running(Site(host="localhost"))


@pytest.fixture
def web_archive():
    yield from running(Archive())
