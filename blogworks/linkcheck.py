"""Link checking: find the links in a post, check them politely, and decide slowly which are dead.

Everything here is plain Python with no Django model imports, so linkblog.py can hand it URLs and
store what comes back (issue 16, "Links that outlive the web"):

- `extract_links(text)`: the http(s) URLs a post's Markdown/HTML links to, in order, once each.
- `quote_url(url)`: a URL as people write it (spaces, unicode, odd characters) quoted the way a
  browser would before sending it.
- `LinkChecker(user_agent, ...).check(urls, skip=..., on_result=..., on_progress=...)`: one check
  per distinct URL per run, HEAD first and GET where HEAD is refused, redirects followed and
  recorded, a per-request timeout, per-host concurrency and spacing, a global concurrency limit.
- `LinkResult`: what one check found (outcome in `OUTCOMES`).
- `classify_history(results, now)`: "alive" | "dead" | "suspect" | "moved" from a URL's results
  over several runs; a single bad day never kills a link.

Why threads and the standard library (`http.client`) rather than `requests` or asyncio: a check is
a handful of blocking requests per URL and a run is a few thousand URLs at most, which a small
thread pool handles; `http.client` lets us see every redirect hop (to record the chain and refuse
non-http(s) targets), send HEAD and read a bounded number of body bytes, and adds no dependency
(`requests` is only installed here as a test tool's dependency).

Limits worth knowing: the timeout bounds each socket operation (connect, each read), not a whole
request, except body reading which also stops at a deadline; DNS resolution uses the system
resolver and is not bounded by the timeout (names under .invalid fail at once, offline too).
"""

from __future__ import annotations

import dataclasses
import html
import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

OUTCOMES = ("ok", "redirected", "not_found", "server_error", "timeout", "dns_error", "connection_error", "parked")
# Outcomes that mean the link works (a redirect that ends on a 2xx page works too).
SUCCESSES = frozenset({"ok", "redirected"})
# Outcomes that say the page is gone rather than that the server had a bad day; only these count
# towards death. A 5xx, a timeout or a refused connection is "try again next run".
DEFINITIVE_FAILURES = frozenset({"not_found", "dns_error", "parked"})

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})
# Answers to HEAD after which we ask again with GET: servers that do not implement HEAD say 405 or
# 501, and some bot walls answer HEAD with 403 but serve GET.
HEAD_REFUSED = frozenset({403, 405, 501})

# Companies whose servers answer for parked domains. A redirect that ends on one of these (or a
# subdomain) means the site is gone. Kept short on purpose: only hosts that do nothing but parking
# or domain sales, so a real page is never called parked for its host.
PARKING_HOSTS = frozenset({
    "sedo.com", "sedoparking.com", "bodis.com", "parkingcrew.net", "dan.com", "afternic.com",
    "hugedomains.com", "above.com",
})
# Phrases (lowercase) that parking pages carry in their first bytes; parking hosts' script URLs
# appear in pages parked at the original domain. A page *about* domain parking can match: that is
# one run's evidence only, death needs several runs, and the author can mark a link fine.
PARKING_MARKERS = (
    "this domain is for sale", "this domain may be for sale", "buy this domain", "domain parking",
    "sedoparking.com", "parkingcrew.net", "bodis.com", "dan.com/buy-domain", "afternic.com/forsale",
)

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_REDIRECTS = 10


# --- Finding links ------------------------------------------------------------------------------

# [text](url "title") and ![alt](url): the destination is <...> or has balanced parentheses, as in
# Wikipedia's https://en.wikipedia.org/wiki/Foo_(bar).
_MARKDOWN_LINK = re.compile(
    r"\]\(\s*(?:<(?P<angle>[^>\n]*)>|(?P<bare>(?:[^\s()]|\([^\s()]*\))+))(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
_MARKDOWN_REFERENCE = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(?P<url>[^\s>]+)>?", re.MULTILINE)
_AUTOLINK = re.compile(r"<(?P<url>https?://[^\s<>]+)>", re.IGNORECASE)
_HREF = re.compile(r"""<a\s[^>]*?\bhref\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<uq>[^\s>"']+))""", re.IGNORECASE)


def extract_links(markdown_or_html_text: str | None) -> list[str]:
    """The http(s) URLs linked from Markdown/HTML text: inline links and images, reference
    definitions, <autolinks> and <a href>, each once, in the order they first appear.

    Bare URLs in running text are not links: the blog's Markdown does not linkify them."""
    if not markdown_or_html_text:
        return []
    found = []  # (position, url)
    for match in _MARKDOWN_LINK.finditer(markdown_or_html_text):
        found.append((match.start(), match.group("angle") if match.group("angle") is not None else match.group("bare")))
    for pattern in (_MARKDOWN_REFERENCE, _AUTOLINK):
        found.extend((match.start(), match.group("url")) for match in pattern.finditer(markdown_or_html_text))
    for match in _HREF.finditer(markdown_or_html_text):
        found.append((match.start(), next(value for value in match.group("dq", "sq", "uq") if value is not None)))
    links = []
    for _, url in sorted(found, key=lambda item: item[0]):
        url = html.unescape(url).strip()  # href="...&amp;..." means "&"
        if re.match(r"https?://", url, re.IGNORECASE):
            links.append(url)
    return list(dict.fromkeys(links))


# --- Quoting URLs as a browser does -------------------------------------------------------------

# Characters left alone in a path/query (RFC 3986 sub-delims, ":@/" and "%" so existing escapes
# survive); everything else, spaces and non-ASCII included, is percent-encoded as UTF-8.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def quote_url(url: str) -> str:
    """`url` made safe to send: scheme and host lowercased, a unicode host IDNA-encoded, path and
    query percent-encoded as UTF-8 (existing %XX kept), the fragment dropped (never sent).

    Raises ValueError for what cannot be requested: not http(s), no host, a bad port or host."""
    # Browsers drop tabs and newlines anywhere in a URL, and surrounding spaces.
    url = re.sub(r"[\t\r\n]", "", url).strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {url[:80]!r}")
    host, port = parts.hostname, parts.port  # .port raises ValueError for a bad port
    if not host:
        raise ValueError(f"no host in URL: {url[:80]!r}")
    netloc = _ascii_host(host)
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def _ascii_host(host: str) -> str:
    try:
        return host.encode("ascii").decode().lower()
    except UnicodeEncodeError:
        pass
    try:
        return host.encode("idna").decode()
    except UnicodeError as error:
        raise ValueError(f"bad host {host[:80]!r}: {error}") from None


def _host_key(url: str) -> str:
    """Politeness counts per host and port, as browsers count connections."""
    try:
        return urlsplit(url).netloc
    except ValueError:  # "http://[::1": never requested, any key will do
        return ""


# --- Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One redirect followed: `url` answered `status` and sent us on."""

    status: int
    url: str


@dataclass(frozen=True)
class LinkResult:
    """What one check of `url` found.

    outcome: "ok" (2xx), "redirected" (2xx after redirects), "not_found" (404/410), "server_error"
    (5xx, and other error answers that are not proof of death: 401, 403 on GET, 429...), "timeout",
    "dns_error" (the name does not resolve), "connection_error" (refused, reset, TLS, bad URL,
    redirect loop, redirect to a non-http(s) URL), "parked" (a domain-parking page).
    final_url: the last URL requested (the redirect target refused, for a refused redirect).
    permanent_redirect: redirects were followed and every one was 301/308, so the author may
    replace the link with final_url."""

    url: str
    status: int | None
    outcome: str
    final_url: str | None
    permanent_redirect: bool
    checked_at: datetime
    error: str = ""
    redirects: tuple[Hop, ...] = ()

    @property
    def works(self) -> bool:
        return self.outcome in SUCCESSES

    def as_dict(self) -> dict:
        """JSON-friendly (for a JSONField or a log line)."""
        data = dataclasses.asdict(self)
        data["checked_at"] = self.checked_at.isoformat()
        data["redirects"] = [[hop.status, hop.url] for hop in self.redirects]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LinkResult:
        data = dict(data)
        data["checked_at"] = datetime.fromisoformat(data["checked_at"])
        data["redirects"] = tuple(Hop(status, url) for status, url in data.get("redirects", ()))
        return cls(**data)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- One HTTP request ---------------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP response: status, headers and at most max_body_bytes of the body."""

    url: str
    method: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes = b""


def http_request(url: str, method: str, *, user_agent: str, timeout: float,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, read_body: bool = True) -> Answer:
    """One request to an already quoted `url`, redirects not followed, the body read up to
    max_body_bytes (and for at most `timeout` seconds), the connection closed. Network errors are
    raised as they come (socket.gaierror, TimeoutError, OSError, http.client.HTTPException)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "User-Agent": user_agent,
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
        # Uncompressed, so the bounded body read is text we can search.
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    try:
        connection.request(method, target, headers=headers)
        response = connection.getresponse()
        body = _read_bounded(response, max_body_bytes, timeout) if read_body and method != "HEAD" else b""
        return Answer(url, method, response.status, response.headers, body)
    finally:
        connection.close()


def _read_bounded(response: http.client.HTTPResponse, limit: int, timeout: float) -> bytes:
    """At most `limit` bytes, and stop at a deadline: a server trickling bytes forever must not
    hold a checker thread (each read alone is bounded by the socket timeout)."""
    deadline = time.monotonic() + timeout
    chunks, size = [], 0
    while size < limit and time.monotonic() < deadline:
        chunk = response.read1(min(16384, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def error_outcome(error: BaseException) -> tuple[str, str]:
    """(outcome, message) for an exception raised while requesting a URL."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, socket.gaierror):
        # EAI_AGAIN is the resolver failing, not the name being gone: not evidence of death.
        if error.errno == socket.EAI_AGAIN:
            return "connection_error", message
        return "dns_error", message
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timeout", message
    return "connection_error", message


# --- Politeness ---------------------------------------------------------------------------------


class _Stopped(Exception):
    """The run was interrupted; a waiting check gives up without a result."""


class _HostGate:
    """At most `limit` requests in flight to one host, and starts at least `delay` seconds apart."""

    def __init__(self, limit: int, delay: float):
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._delay = delay

    @contextmanager
    def turn(self, stopping: threading.Event):
        self._slots.acquire()
        try:
            with self._lock:
                # Book the next start time under the lock, sleep outside it.
                now = time.monotonic()
                start = max(now, self._next_start)
                self._next_start = start + self._delay
            if stopping.wait(start - now):
                raise _Stopped
            yield
        finally:
            self._slots.release()


def _interleave_by_host(urls: list[str]) -> list[str]:
    """Round-robin over hosts, so the global workers spread over hosts instead of all queueing
    behind one host's gate while other hosts wait."""
    by_host: dict[str, list[str]] = {}
    for url in urls:
        by_host.setdefault(_host_key(url), []).append(url)
    queues = list(by_host.values())
    ordered = []
    for index in range(max((len(queue) for queue in queues), default=0)):
        ordered.extend(queue[index] for queue in queues if index < len(queue))
    return ordered


# --- The checker --------------------------------------------------------------------------------


@dataclass
class LinkChecker:
    """Checks URLs politely. One instance per run; `check()` is not meant to be called from
    several threads at once.

    user_agent names the blog and where to complain, e.g.
    "linkblog link checker (+https://example.com/)". per_host requests at most in flight to one
    host (host:port), their starts host_delay seconds apart; max_workers checks at once overall.
    always_get_body: also GET pages that answered HEAD on their own host, to spot domains parked in
    place (costs a second request per link; off by default, parking that redirects is still seen).
    """

    user_agent: str
    timeout: float = DEFAULT_TIMEOUT
    per_host: int = 2
    host_delay: float = 1.0
    max_workers: int = 8
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    always_get_body: bool = False
    parking_hosts: frozenset[str] = PARKING_HOSTS
    clock: Callable[[], datetime] = _now
    _gates: dict = field(default_factory=dict, init=False, repr=False)
    _gates_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def check(self, urls: Iterable[str], *, skip: Iterable[str] = (),
              on_result: Callable[[LinkResult], object] | None = None,
              on_progress: Callable[[int, int], object] | None = None) -> list[LinkResult]:
        """Check each distinct URL once (URLs that quote to the same request share one check) and
        return the results in the order given, one per distinct URL not in `skip`.

        on_result(result) and on_progress(done, total) run in the calling thread as each check
        finishes (so a Django caller may use the ORM there). total counts the skipped URLs, which
        are done from the start: a resumed run's progress starts where the last one stopped. An
        exception from a callback, or Ctrl-C, cancels the checks not yet started and propagates;
        results already passed to on_result are all a resumed run needs in `skip`."""
        distinct = list(dict.fromkeys(urls))
        skip = set(skip)
        todo = [url for url in distinct if url not in skip]
        groups = self._group_by_request(todo)
        done, total = len(distinct) - len(todo), len(distinct)
        if on_progress:
            on_progress(done, total)
        results: dict[str, LinkResult] = {}
        self._stopping = threading.Event()  # a fresh one: an interrupted run left the last one set
        executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="linkcheck")
        try:
            futures = {executor.submit(self._check_quietly, group[0]): group
                       for group in (groups[key] for key in _interleave_by_host(list(groups)))}
            for future in as_completed(futures):
                for url in futures[future]:
                    results[url] = dataclasses.replace(future.result(), url=url)
                    if on_result:
                        on_result(results[url])
                    done += 1
                    if on_progress:
                        on_progress(done, total)
        except BaseException:
            # Interrupted: wake the checks waiting for their turn so they give up, and return at
            # once; requests in flight end by themselves within the timeout.
            self._stopping.set()
            raise
        finally:
            executor.shutdown(wait=False, cancel_futures=True)  # drops what has not started
        return [results[url] for url in todo]

    @staticmethod
    def _group_by_request(urls: list[str]) -> dict[str, list[str]]:
        """{request URL: [the URLs as written that quote to it]}; an unquotable URL is its own."""
        groups: dict[str, list[str]] = {}
        for url in urls:
            try:
                key = quote_url(url)
            except ValueError:
                key = url
            groups.setdefault(key, []).append(url)
        return groups

    def _check_quietly(self, url: str) -> LinkResult:
        try:
            return self.check_one(url)
        except _Stopped:
            # Only reached after the run was interrupted, when nobody reads this any more.
            return self._result(url, None, "connection_error", None, (), self.clock(), "interrupted")
        except Exception as error:  # noqa: BLE001
            # Whatever odd URL or server tripped us, one link must not end a run of thousands.
            return self._result(url, None, "connection_error", None, (), self.clock(),
                                f"unexpected {type(error).__name__}: {error}")

    def check_one(self, url: str) -> LinkResult:
        """Check one URL now (through the same per-host gates as check())."""
        checked_at = self.clock()
        try:
            request_url = quote_url(url)
        except ValueError as error:
            return self._result(url, None, "connection_error", None, (), checked_at, f"invalid URL: {error}")
        return self._follow(url, request_url, checked_at)

    def _follow(self, url: str, current: str, checked_at: datetime) -> LinkResult:
        """Request `current`, following redirects by hand so each hop is seen and recorded."""
        hops: list[Hop] = []
        while True:
            try:
                answer = self._request_with_fallback(current)
            except (OSError, http.client.HTTPException, ValueError) as error:
                outcome, message = error_outcome(error)
                return self._result(url, None, outcome, current, hops, checked_at, message)
            location = answer.headers.get("Location") if answer.status in REDIRECT_STATUSES else None
            if not location:
                return self._final(url, answer, hops, checked_at)
            hops.append(Hop(answer.status, current))
            current, problem = self._next_hop(current, location, hops)
            if problem:
                return self._result(url, answer.status, "connection_error", current, hops, checked_at, problem)

    def _next_hop(self, current: str, location: str, hops: list[Hop]) -> tuple[str, str]:
        """(next URL, "") or (the refused target, why we stop)."""
        target = urljoin(current, location.strip())
        if urlsplit(target).scheme.lower() not in _DEFAULT_PORTS:
            return target, f"redirect to a non-http(s) URL refused: {target[:200]}"
        try:
            target = quote_url(target)
        except ValueError as error:
            return target, f"redirect to an invalid URL: {error}"
        if target in {hop.url for hop in hops}:
            return target, f"redirect loop after {len(hops)} redirects"
        if len(hops) >= self.max_redirects:
            return target, f"more than {self.max_redirects} redirects"
        return target, ""

    def _request(self, url: str, method: str) -> Answer:
        with self._gate(url).turn(self._stopping):
            return http_request(url, method, user_agent=self.user_agent, timeout=self.timeout,
                                max_body_bytes=self.max_body_bytes)

    def _request_with_fallback(self, url: str) -> Answer:
        """HEAD, then GET if the server refuses HEAD (by status, or by dropping the connection)."""
        try:
            answer = self._request(url, "HEAD")
        except (ConnectionResetError, http.client.BadStatusLine):  # RemoteDisconnected is both
            return self._request(url, "GET")
        if answer.status in HEAD_REFUSED:
            return self._request(url, "GET")
        return answer

    def _gate(self, url: str) -> _HostGate:
        key = _host_key(url)
        with self._gates_lock:
            if key not in self._gates:
                self._gates[key] = _HostGate(self.per_host, self.host_delay)
            return self._gates[key]

    def _final(self, url: str, answer: Answer, hops: list[Hop], checked_at: datetime) -> LinkResult:
        status = answer.status
        if 200 <= status < 300:
            outcome = "redirected" if hops else "ok"
            if self._looks_parked(url, answer):
                outcome = "parked"
        elif status in (404, 410):
            outcome = "not_found"
        else:
            outcome = "server_error"
        return self._result(url, status, outcome, answer.url, hops, checked_at, "")

    def _looks_parked(self, url: str, answer: Answer) -> bool:
        original_host = urlsplit(quote_url(url)).hostname
        final_host = urlsplit(answer.url).hostname
        moved_host = final_host != original_host
        if moved_host and is_parking_host(final_host, self.parking_hosts):
            return True
        body = answer.body
        if answer.method == "HEAD" and (moved_host or self.always_get_body) and _is_html(answer):
            # HEAD carries no body: read the page's first bytes to look for parking markers.
            try:
                body = self._request(answer.url, "GET").body
            except (OSError, http.client.HTTPException):
                return False
        return has_parking_markers(body)

    @staticmethod
    def _result(url, status, outcome, final_url, hops, checked_at, error) -> LinkResult:
        hops = tuple(hops)
        permanent = bool(hops) and all(hop.status in PERMANENT_REDIRECTS for hop in hops)
        return LinkResult(url=url, status=status, outcome=outcome, final_url=final_url,
                          permanent_redirect=permanent, checked_at=checked_at, error=error, redirects=hops)


def check_links(urls: Iterable[str], user_agent: str, *, skip: Iterable[str] = (),
                on_result: Callable[[LinkResult], object] | None = None,
                on_progress: Callable[[int, int], object] | None = None, **options) -> list[LinkResult]:
    """LinkChecker(user_agent, **options).check(urls, ...) in one call."""
    return LinkChecker(user_agent, **options).check(urls, skip=skip, on_result=on_result, on_progress=on_progress)


def _is_html(answer: Answer) -> bool:
    content_type = (answer.headers.get("Content-Type") or "text/html").lower()
    return "html" in content_type


def is_parking_host(host: str | None, parking_hosts: Iterable[str] = PARKING_HOSTS) -> bool:
    """Whether `host` is one of the parking hosts or a subdomain of one."""
    host = (host or "").lower().rstrip(".")
    return any(host == parked or host.endswith("." + parked) for parked in parking_hosts)


def has_parking_markers(body: bytes) -> bool:
    """Whether a page's first bytes carry a typical parking phrase or parking host."""
    text = body.decode("utf-8", "replace").lower()
    text = re.sub(r"\s+", " ", text)  # "for\n   sale" is still "for sale"
    return any(marker in text for marker in PARKING_MARKERS)


# --- Deciding slowly ----------------------------------------------------------------------------


def classify_history(results_oldest_first: Iterable[LinkResult], now: datetime, min_failures: int = 3,
                     min_span: timedelta = timedelta(days=7)) -> str:
    """A URL's state as of `now` from its check results, one per run, oldest first.

    "dead": at least `min_failures` definitive failures (not_found, dns_error, parked) since the
    last success, the first and last of them at least `min_span` apart, and the latest result a
    failure. "suspect": failing now but not (yet) dead; 5xx, timeouts and connection errors never
    make more than suspect. "moved": the latest result works and reached a different URL through
    permanent redirects only. "alive": otherwise, including no results at all (no evidence).
    Results checked after `now` are ignored, so a history can be replayed as of any date."""
    history = [result for result in results_oldest_first if result.checked_at <= now]
    if not history:
        return "alive"
    latest = history[-1]
    if latest.works:
        moved = latest.permanent_redirect and latest.final_url not in (None, latest.url)
        return "moved" if moved else "alive"
    since_success = []
    for result in reversed(history):
        if result.works:
            break
        since_success.append(result)
    definitive = [result for result in reversed(since_success) if result.outcome in DEFINITIVE_FAILURES]
    if len(definitive) >= min_failures and definitive[-1].checked_at - definitive[0].checked_at >= min_span:
        return "dead"
    return "suspect"
