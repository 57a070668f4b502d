"""Webmention (W3C Recommendation) sending and receiving, and WebSub publish pings.

What lives here:
- discover_endpoint: find a page's Webmention endpoint (HTTP Link header first, then the first
  <link>/<a> with rel=webmention in the HTML, resolved against the final URL after redirects);
- send: POST source/target to an endpoint;
- validate_request: the synchronous checks the receiving view makes before queueing (answers 400);
- verify: the background check that the source really links the target, returning a Mention
  built from the source's h-entry (parsed with mf2py);
- websub_ping: tell a WebSub hub that feeds changed.
"""

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

from . import netfetch

FetchError = netfetch.FetchError
_LINK_VALUE = re.compile(r"<([^>]*)>([^<]*)")
_REL_PARAM = re.compile(r'(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))', re.IGNORECASE)


class WebmentionError(Exception):
    """A Webmention we refuse or cannot verify. `deleted` is True when the source answered 410
    Gone, which the spec says means: remove the mention we hold."""

    def __init__(self, message: str, deleted: bool = False):
        super().__init__(message)
        self.deleted = deleted


def _rel_webmention_in_link_headers(values: list[str]) -> str | None:
    """The first URL in Link headers whose rel list holds `webmention` (rel may hold several)."""
    for value in values:
        for url, params in _LINK_VALUE.findall(value):
            for match in _REL_PARAM.finditer(params):
                rels = (match.group(1) or match.group(2) or "").lower().split()
                if "webmention" in rels:
                    return url
    return None


class _EndpointFinder(HTMLParser):
    """Stops at the first <link> or <a> with rel=webmention and an href, in document order.
    HTMLParser reports comments separately, so an endpoint inside <!-- --> is ignored."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.href = None

    def handle_starttag(self, tag, attrs):
        if self.href is not None or tag not in ("link", "a"):
            return
        attrs = dict(attrs)
        if "webmention" in (attrs.get("rel") or "").lower().split() and attrs.get("href") is not None:
            self.href = attrs["href"]


def discover_endpoint(target_url: str, timeout: float = 10.0, max_bytes: int = netfetch.MAX_BYTES) -> str | None:
    """The absolute Webmention endpoint of target_url, or None when it has none (or is unreachable
    or refuses us: nothing to send then). An empty href means the page is its own endpoint."""
    try:
        resp = netfetch.request("GET", target_url, headers={"Accept": "text/html"},
                                timeout=timeout, max_bytes=max_bytes)
    except FetchError:
        return None
    if resp.status >= 400:
        return None
    href = _rel_webmention_in_link_headers(resp.headers.get_all("Link") or [])
    if href is None and resp.content_type in ("text/html", "application/xhtml+xml"):
        finder = _EndpointFinder()
        finder.feed(resp.text())
        href = finder.href
    if href is None:
        return None
    # Relative to the URL after redirects, as the spec says; urljoin("x", "") is the page itself.
    endpoint = urljoin(resp.url, href.strip())
    return endpoint if urlsplit(endpoint).scheme in ("http", "https") else None


def send(source: str, target: str, endpoint: str, timeout: float = 10.0) -> int:
    """POST a Webmention; returns the status (2xx is success: 201/202 mean queued). Raises
    FetchError on network failure, for the caller to retry later."""
    body = urlencode({"source": source, "target": target}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return netfetch.request("POST", endpoint, headers=headers, data=body, timeout=timeout, max_bytes=65_536).status


def validate_request(source: str, target: str, target_hosts: set[str]) -> None:
    """What the receiving view checks before answering 202: raises WebmentionError (answer 400)."""
    for name, url in (("source", source), ("target", target)):
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebmentionError(f"{name} is not an http(s) URL")
    if source.split("#")[0] == target.split("#")[0]:
        raise WebmentionError("source and target are the same page")
    if urlsplit(target).netloc.lower() not in {h.lower() for h in target_hosts}:
        raise WebmentionError("target is not on this site")


@dataclass
class Mention:
    """A verified Webmention. content_html is the source's HTML, NOT sanitized: sanitize on save.
    kind is reply, like, repost, bookmark or mention, from the h-entry's property naming target."""

    source: str
    target: str
    url: str
    kind: str = "mention"
    author_name: str | None = None
    author_url: str | None = None
    author_photo: str | None = None
    name: str | None = None
    content_html: str | None = None
    content_text: str | None = None
    published: str | None = None


class _LinkCollector(HTMLParser):
    """Every URL the page links or embeds; what counts as 'source links to target'."""

    ATTRS = {"a": "href", "area": "href", "img": "src", "video": "src", "audio": "src", "source": "src"}

    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base, self.urls = base, set()

    def handle_starttag(self, tag, attrs):
        wanted = self.ATTRS.get(tag)
        value = dict(attrs).get(wanted) if wanted else None
        if value:
            self.urls.add(urljoin(self.base, value.strip()))


def verify(source_url: str, target_url: str, timeout: float = 10.0, max_bytes: int = netfetch.MAX_BYTES) -> Mention:
    """Fetch the source and check it links to target; returns the Mention, or raises
    WebmentionError (deleted=True on 410) or FetchError (network: retry later)."""
    resp = netfetch.request("GET", source_url, headers={"Accept": "text/html"}, timeout=timeout, max_bytes=max_bytes)
    if resp.status == 410:
        raise WebmentionError("source is gone", deleted=True)
    if resp.status != 200:
        raise WebmentionError(f"source answered {resp.status}")
    text = resp.text()
    if resp.content_type in ("text/html", "application/xhtml+xml"):
        collector = _LinkCollector(resp.url)
        collector.feed(text)
        linked = target_url in collector.urls
    else:  # the spec allows plain text, JSON and the like: a mention of the URL is a link
        linked = target_url in text
    if not linked:
        # The spec asks receivers to treat this like a deletion of a mention they hold.
        raise WebmentionError("source does not link to target", deleted=True)
    return _mention(source_url, target_url, resp, text)


def _mention(source_url, target_url, resp, text) -> Mention:
    mention = Mention(source=source_url, target=target_url, url=resp.url)
    if resp.content_type not in ("text/html", "application/xhtml+xml"):
        return mention
    # Imported here: mf2py brings BeautifulSoup and requests (~19 MB), and only the background job
    # that verifies a mention parses its source; web workers never need them.
    import mf2py

    entry = _first_entry(mf2py.parse(doc=text, url=resp.url).get("items", []))
    if entry is None:
        return mention
    props = entry.get("properties", {})
    mention.url = _first_str(props.get("url")) or resp.url
    mention.name = _first_str(props.get("name"))
    mention.published = _first_str(props.get("published"))
    content = (props.get("content") or [None])[0]
    if isinstance(content, dict):
        mention.content_html, mention.content_text = content.get("html"), content.get("value")
    elif isinstance(content, str):
        mention.content_text = content
    mention.author_name, mention.author_url, mention.author_photo = _author(props.get("author"))
    mention.kind = _kind(props, target_url)
    return mention


def _first_entry(items: list) -> dict | None:
    """The first h-entry, looking inside h-feeds and other containers too (depth first)."""
    for item in items:
        if "h-entry" in item.get("type", []):
            return item
        found = _first_entry(item.get("children", []))
        if found:
            return found
    return None


def _first_str(values) -> str | None:
    """mf2 property values are lists of strings or of {value, alt/html} dicts."""
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) else None


def _author(values) -> tuple[str | None, str | None, str | None]:
    """(name, url, photo) from an author h-card, or from a bare author name or URL."""
    if not values:
        return None, None, None
    author = values[0]
    if isinstance(author, str):
        is_url = urlsplit(author).scheme in ("http", "https")
        return (None, author, None) if is_url else (author, None, None)
    props = author.get("properties", {}) if isinstance(author, dict) else {}
    return _first_str(props.get("name")), _first_str(props.get("url")), _first_str(props.get("photo"))


def _kind(props: dict, target_url: str) -> str:
    """Which relation the entry has to the target; a plain link is a mention."""
    relations = (("in-reply-to", "reply"), ("like-of", "like"), ("repost-of", "repost"), ("bookmark-of", "bookmark"))
    for prop, kind in relations:
        urls = {v if isinstance(v, str) else _first_str(v.get("properties", {}).get("url")) or v.get("value")
                for v in props.get(prop, []) if isinstance(v, (str, dict))}
        if target_url in urls:
            return kind
    return "mention"


def websub_ping(hub_url: str, topic_urls: list[str], timeout: float = 10.0) -> int:
    """Tell a WebSub hub these feeds changed (hub.mode=publish, one hub.url per feed); returns the
    status (hubs answer 204 or 202). Raises FetchError on network failure."""
    body = urlencode([("hub.mode", "publish")] + [("hub.url", url) for url in topic_urls]).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return netfetch.request("POST", hub_url, headers=headers, data=body, timeout=timeout, max_bytes=65_536).status
