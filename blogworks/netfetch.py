"""A small outgoing HTTP client for the fediverse and Webmention code: bounded, http(s) only.

Every URL it fetches comes from strangers (a follower's actor, a Webmention source, a linked page),
so it reads at most `max_bytes` of any body, times out, follows at most a few redirects, and refuses
any scheme but http and https (urllib would otherwise open file:// and ftp:// URLs). Error statuses
come back as responses, not exceptions: the caller decides what a 410 or a 503 means. Only network
failures raise FetchError.

It refuses hosts that resolve to an address that is not on the public internet (loopback, private
networks, link-local such as a cloud's metadata service at 169.254.169.254), before connecting and
again for every redirect: otherwise anyone could make the blog fetch its own network's pages by
sending a Webmention or an actor naming them. LINKBLOG_FETCH_PRIVATE_ADDRESSES lets a deployment
(or the tests, whose stand-in servers all listen on 127.0.0.1) allow them. The address is checked
when the host is resolved, so a name that resolves differently a moment later (DNS rebinding)
could still slip through: a firewall is the complete guard.
"""

import ipaddress
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urlsplit

USER_AGENT = "linkblog-blogworks/0.1"
MAX_BYTES = 1_000_000
MAX_REDIRECTS = 5


class FetchError(Exception):
    """The request could not be made or its answer not read (network, timeout, too big, bad URL)."""


class RefusedAddress(FetchError):
    """The URL's host is not on the public internet: asking again later will not help."""


@dataclass
class Response:
    status: int
    url: str  # the final URL, after redirects: relative links resolve against it
    headers: Message = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type() if self.headers else ""

    def text(self) -> str:
        return self.body.decode(self.headers.get_content_charset() or "utf-8", errors="replace")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow few redirects, and only to http(s): a redirect to file:// must not be read."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise FetchError(f"refusing redirect to {newurl!r}")
        refuse_private_host(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_Redirects)


def check_url(url: str) -> None:
    """Raise FetchError unless url is an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"not an http(s) URL: {url!r}")


def private_addresses_allowed() -> bool:
    from django.conf import settings  # read when asked: the tests switch it per test

    return getattr(settings, "LINKBLOG_FETCH_PRIVATE_ADDRESSES", False)


def refuse_private_host(url: str) -> None:
    """Raise FetchError if url's host resolves to any address that is not public."""
    if private_addresses_allowed():
        return
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError) as error:
        raise FetchError(f"cannot resolve {host!r}: {error}") from error
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise RefusedAddress(f"refusing {url!r}: {host} is not a public address ({address})")


def request(method, url, *, headers=None, data=None, timeout=10.0, max_bytes=MAX_BYTES) -> Response:
    """Make one request; returns a Response for any HTTP status, raises FetchError otherwise."""
    check_url(url)
    refuse_private_host(url)
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        resp = _OPENER.open(req, timeout=timeout)
    except urllib.error.HTTPError as error:  # a 4xx/5xx answer: still a response
        resp = error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise FetchError(f"{method} {url} failed: {error}") from error
    with resp:
        return Response(resp.status, resp.geturl(), resp.headers, _read_bounded(resp, max_bytes, url))


def _read_bounded(resp, max_bytes: int, url: str) -> bytes:
    """Read the body but never more than max_bytes: a hostile server could send gigabytes."""
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{url} answered {declared} bytes, more than {max_bytes}")
    try:
        body = resp.read(max_bytes + 1)
    except (OSError, ValueError) as error:  # timeouts mid-body and broken connections
        raise FetchError(f"reading {url} failed: {error}") from error
    if len(body) > max_bytes:
        raise FetchError(f"{url} answered more than {max_bytes} bytes")
    return body
