"""Archived copies of links: ask a web archive to save a page, and find its closest snapshot.

The archive speaks the Wayback Machine's public, anonymous API shapes (issue 16), at a base URL
given by the caller (default https://web.archive.org; tests point it at a local stand-in):

- `save(url)`: GET {base_url}/save/{url}, the anonymous Save Page Now. The archive answers with the
  snapshot's address either in a `Content-Location` header (`/web/20240101000000/https://...`) or as
  a redirect whose `Location` is that address. A 200 without either means the capture was queued
  but not finished (the archive's HTML then polls a job): we report it, and `lookup()` later finds
  the snapshot.
- `lookup(url)`: GET {base_url}/wayback/available?url=..., the availability API, whose JSON is
  {"archived_snapshots": {"closest": {"available": true, "url": "...", "timestamp": "...",
  "status": "200"}}} or {"archived_snapshots": {}}.

Saving is slow (tens of seconds) and rate limited (429): callers run it in a background task and
never let an ArchiveError fail anything the author did. HTTP goes through linkcheck's
`http_request` (standard library, bounded body, redirects seen by hand).
"""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from .linkcheck import http_request, quote_url

DEFAULT_BASE_URL = "https://web.archive.org"
DEFAULT_USER_AGENT = "linkblog archiver"
# A snapshot address: /web/ then a 14-digit timestamp (optionally with a flag such as id_) then the URL.
_SNAPSHOT_PATH = re.compile(r"/web/\d{14}[a-z_]*/.+")
_MAX_BASE_REDIRECTS = 3


class ArchiveError(Exception):
    """The archive could not save or look up a URL; `status` is its HTTP status when it answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def save(url: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 120.0,
         user_agent: str = DEFAULT_USER_AGENT) -> str:
    """Ask the archive to save `url` now; the absolute URL of the new snapshot.

    Raises ArchiveError when the archive is unreachable, slow past `timeout`, refuses (429 rate
    limit, 5xx), or answers without saying where the snapshot is."""
    request_url = f"{base_url.rstrip('/')}/save/{_quote_target(url)}"
    for _ in range(_MAX_BASE_REDIRECTS + 1):
        answer = _get(request_url, timeout, user_agent, "save")
        snapshot = _snapshot_from(answer, request_url)
        if snapshot:
            return snapshot
        location = answer.headers.get("Location")
        if answer.status in (301, 302, 303, 307, 308) and location:
            # Not a snapshot address: the archive moving us on (http -> https, a new host).
            request_url = urljoin(request_url, location)
            continue
        break
    if answer.status == 429:
        raise ArchiveError(f"the archive is rate limiting us (429) for {url}", answer.status)
    if answer.status >= 400:
        raise ArchiveError(f"the archive refused to save {url}: HTTP {answer.status}", answer.status)
    raise ArchiveError(f"the archive answered HTTP {answer.status} for {url} without a snapshot "
                       f"address (capture queued?); look it up later", answer.status)


def lookup(url: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 30.0,
           user_agent: str = DEFAULT_USER_AGENT, timestamp: str | None = None) -> str | None:
    """The archive's closest snapshot of `url` (to `timestamp`, YYYYMMDDhhmmss, when given), or
    None when it has none. Raises ArchiveError when the archive cannot be asked."""
    query = "url=" + quote(url, safe="")
    if timestamp:
        query += "&timestamp=" + quote(timestamp, safe="")
    answer = _get(f"{base_url.rstrip('/')}/wayback/available?{query}", timeout, user_agent, "lookup")
    if answer.status != 200:
        raise ArchiveError(f"the archive's availability API answered HTTP {answer.status}", answer.status)
    try:
        closest = json.loads(answer.body)["archived_snapshots"].get("closest") or {}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ArchiveError(f"the archive's availability API answered something unexpected: {error}") from None
    if not closest.get("available") or not closest.get("url"):
        return None
    return _same_scheme_as_base(closest["url"], base_url)


def _quote_target(url: str) -> str:
    """The URL to save, quoted as a browser would (spaces, unicode) but otherwise appended as is:
    the archive reads everything after /save/ as the URL, query string included."""
    try:
        return quote_url(url)
    except ValueError as error:
        raise ArchiveError(f"cannot archive {url[:80]!r}: {error}") from None


def _get(url: str, timeout: float, user_agent: str, what: str):
    try:
        return http_request(url, "GET", user_agent=user_agent, timeout=timeout, max_body_bytes=256 * 1024)
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise ArchiveError(f"archive {what} failed: {type(error).__name__}: {error}") from None


def _snapshot_from(answer, request_url: str) -> str | None:
    """The absolute snapshot URL from Content-Location, or from a redirect to a snapshot."""
    candidates = [answer.headers.get("Content-Location")]
    if 300 <= answer.status < 400:
        candidates.append(answer.headers.get("Location"))
    for candidate in candidates:
        if candidate and _SNAPSHOT_PATH.match(urlsplit(urljoin(request_url, candidate)).path):
            return urljoin(request_url, candidate)
    return None


def _same_scheme_as_base(snapshot_url: str, base_url: str) -> str:
    """The availability API answers http:// snapshot URLs; on the archive's own host, use the base
    URL's scheme (https) so readers are not sent to plain HTTP."""
    snapshot, base = urlsplit(snapshot_url), urlsplit(base_url)
    if snapshot.netloc == base.netloc and snapshot.scheme != base.scheme:
        return urlunsplit((base.scheme, *snapshot[1:]))
    return snapshot_url
