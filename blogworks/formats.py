"""Formats: reading the files an import takes, and writing the files an export gives.

In: our NDJSON (one JSON object a line, streamed), browser bookmark files (Netscape HTML), Pinboard's
JSON export and Atom/RSS feeds. Each reader yields (where, record) pairs: `where` names the line or
item for messages, `record` is a dict in our NDJSON shape, or a BadRecord saying what is wrong. The
importer (importer.py) validates and writes them.

Out: our NDJSON, deterministic (export, import into an empty database, export is byte-identical), and
the blogmarks as a bookmarks file. Exporters take the models as arguments.
"""

import codecs
import heapq
import html
import io
import json
import math
import re
from datetime import datetime, timedelta, timezone as dt_timezone
from html.parser import HTMLParser
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import feedparser
from django.template.loader import get_template
from django.utils.html import strip_tags

from .text import sanitize_html

IMPORT_FORMATS = ("ndjson", "netscape", "pinboard", "feed")
EXPORT_FORMATS = ("ndjson", "netscape")
MAX_LINE_BYTES = 4 * 1024 * 1024  # one NDJSON line: the longest post (rules.MAX_TEXT_LENGTH), even written as \u escapes
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024  # a bookmarks file, Pinboard export or feed, parsed whole


class ImportFailed(Exception):
    """The import cannot go on (unreadable file, unknown format): nothing was written."""


class BadRecord(Exception):
    """One record that cannot be imported; the message says why."""


class NotALink(BadRecord):
    """A bookmark that is not a web link (javascript:, place:, file:): left out, never an error."""


# Reading: each reader yields (where, dict in our NDJSON shape) or (where, BadRecord)


def read_ndjson(stream, progress):
    """One JSON object per line, read line by line: the file is never held in memory whole."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        where = f"line {number}"
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            skip_rest_of_line(stream)
            yield where, BadRecord(f"is longer than {MAX_LINE_BYTES // (1024 * 1024)} MB")
            continue
        progress.update(stream)
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if raw.strip():
            yield where, parse_json_line(raw)


def skip_rest_of_line(stream):
    while (chunk := stream.readline(MAX_LINE_BYTES)) and not chunk.endswith(b"\n"):
        pass


def parse_json_line(raw):
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return BadRecord(f"is not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); NDJSON files are UTF-8")
    except json.JSONDecodeError as error:
        return BadRecord(f"is not valid JSON: {error.msg} (column {error.colno})")
    if not isinstance(record, dict):
        return BadRecord("is not a JSON object")
    return record


def read_document(stream):
    """A whole bookmarks file, Pinboard export or feed (these formats are parsed in one piece)."""
    data = stream.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ImportFailed(f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
    return data


def decode_text(data, encoding, what):
    """Bytes to text in the declared encoding, or a clear error naming the line of the first bad byte."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ImportFailed(f"the {what} declares an unknown character set “{encoding}”")
    try:
        return data.decode(codec.name).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ImportFailed(
            f"the {what} is not valid {encoding} text (byte 0x{data[error.start]:02x} on line {line}); "
            "save it as UTF-8 or declare its character set"
        )


def declared_charset(data):
    """The charset an HTML file names in its first few kilobytes, e.g. <META ... charset=UTF-8>."""
    match = re.search(rb"""charset=["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.I)
    return match.group(1).decode("ascii") if match else "utf-8"


def unix_time(value):
    """A browser's ADD_DATE (seconds since 1970; some write milli- or microseconds) as a UTC datetime."""
    seconds = float(value)
    if not math.isfinite(seconds) or abs(seconds) >= 1e17:  # past microseconds up to the year 5138
        raise ValueError(f"not a number of seconds: {value}")
    while abs(seconds) > 1e11:  # milli- or microseconds: as seconds, 1e11 would be the year 5138
        seconds /= 1000
    return datetime(1970, 1, 1, tzinfo=dt_timezone.utc) + timedelta(seconds=seconds)


class NetscapeBookmarks(HTMLParser):
    """Browser bookmark files: <DT><A HREF ADD_DATE TAGS PRIVATE>title</A> then an optional <DD>note."""

    IGNORED = {"script", "style", "title"}

    def __init__(self, folders_as_tags):
        super().__init__(convert_charrefs=True)
        self.folders_as_tags = folders_as_tags
        self.folders, self.pending_folder = [], None
        self.bookmarks = []  # [line, attributes, title, note, folders]
        self.capture, self.ignoring = None, 0
        self.note_owner = None  # the bookmark a <DD> right after it describes

    def handle_starttag(self, tag, attrs):
        if tag in self.IGNORED:
            self.ignoring += 1
        elif tag == "a":
            self.end_note()
            self.note_owner = [self.getpos()[0], dict(attrs), "", None, list(self.folders)]
            self.bookmarks.append(self.note_owner)
            self.capture = "title"
        elif tag == "h3":
            self.end_note()
            self.pending_folder, self.capture = "", "folder"
        elif tag == "dl":
            self.end_note()
            self.folders.append(self.pending_folder)
            self.pending_folder = None
        elif tag == "dd" and self.note_owner and self.capture is None and self.note_owner[3] is None:
            self.note_owner[3], self.capture = "", "note"
        elif tag == "dt":
            self.end_note()

    def handle_endtag(self, tag):
        if tag in self.IGNORED:
            self.ignoring = max(0, self.ignoring - 1)
        elif tag in ("a", "h3"):
            self.capture = None
        elif tag == "dl":
            self.end_note()
            if self.folders:
                self.folders.pop()

    def handle_data(self, data):
        if self.ignoring:
            return
        if self.capture == "title":
            self.bookmarks[-1][2] += data
        elif self.capture == "note":
            self.bookmarks[-1][3] += data
        elif self.capture == "folder":
            self.pending_folder += data

    def end_note(self):
        """A note ends at the next item or folder; a folder's own <DD> describes no bookmark."""
        if self.capture == "note":
            self.capture = None
        self.note_owner = None

    def records(self):
        for line, attributes, title, note, folders in self.bookmarks:
            yield f"line {line}", self.record(attributes, " ".join(title.split()), (note or "").strip(), folders)

    def record(self, attributes, title, note, folders):
        url = (attributes.get("href") or "").strip()
        if not url:
            return BadRecord("has a bookmark without HREF")
        if not is_web_url(url):
            return NotALink(f"is not a web link ({url.partition(':')[0]}:), left out")
        tags = (attributes.get("tags") or "").split(",")
        if self.folders_as_tags:
            tags += [name for name in folders if name]
        record = carried({"type": "blogmark", "link_url": url, "link_title": title or url, "commentary": note, "tags": tags})
        if "private" in attributes:
            record["is_draft"] = attributes["private"] == "1"
        if attributes.get("add_date"):
            try:
                record["created"] = unix_time(attributes["add_date"])
            except (ValueError, OverflowError):
                return BadRecord(f"has an ADD_DATE that is not a date: “{attributes['add_date'][:40]}”")
        return record


def carried(record):
    """A bookmark's record without the note and tags it does not have: another service's empty
    note says nothing, and must not wipe the commentary or tags of a blogmark already on the blog."""
    if not any(name.strip() for name in record["tags"]):
        del record["tags"]
    if not record["commentary"]:
        del record["commentary"]
    return record


def is_web_url(url):
    return url.partition(":")[0].lower() in ("http", "https")


def read_netscape(stream, progress, folders_as_tags=False):
    data = read_document(stream)
    parser = NetscapeBookmarks(folders_as_tags)
    parser.feed(decode_text(data, declared_charset(data), "bookmarks file"))
    parser.close()
    yield from progress.counted(parser.records(), len(parser.bookmarks))


def read_pinboard(stream, progress):
    """Pinboard's JSON export: a list of {href, description, extended, time, shared, toread, tags}."""
    text = decode_text(read_document(stream), "utf-8", "Pinboard file")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFailed(f"the Pinboard file is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})")
    if not isinstance(items, list):
        raise ImportFailed("the Pinboard file is not a JSON list of bookmarks")
    numbered = ((f"item {number}", pinboard_record(item)) for number, item in enumerate(items, 1))
    yield from progress.counted(numbered, len(items))


def pinboard_record(item):
    if not isinstance(item, dict):
        return BadRecord("is not a JSON object")
    url = item.get("href")
    if not isinstance(url, str) or not url.strip():
        return BadRecord("has no href")
    tags = str(item.get("tags") or "").split()
    if item.get("toread") == "yes":
        tags.append("toread")
    record = carried({"type": "blogmark", "link_url": url.strip(), "link_title": item.get("description") or url.strip(),
                      "commentary": item.get("extended") or "", "tags": tags})
    if "shared" in item:
        record["is_draft"] = item["shared"] == "no"
    if item.get("time"):
        record["created"] = item["time"]
    return record


def read_feed(stream, progress):
    """An Atom or RSS feed: every item becomes a blogmark (its summary, sanitized, the commentary)."""
    parsed = feedparser.parse(read_document(stream))
    if parsed.bozo and not parsed.entries:
        raise ImportFailed(f"not a readable Atom or RSS feed: {parsed.bozo_exception}")
    numbered = ((f"item {number}", feed_record(item)) for number, item in enumerate(parsed.entries, 1))
    yield from progress.counted(numbered, len(parsed.entries))


def feed_record(item):
    url = (item.get("link") or "").strip()
    if not url:
        return BadRecord("has no link")
    commentary = item.get("summary") or ""
    if item.get("content"):
        commentary = item.content[0].get("value") or commentary
    record = carried({"type": "blogmark", "link_url": url, "link_title": " ".join((feed_title(item) or url).split()),
                      "commentary": sanitize_html(commentary), "tags": [tag.get("term") or "" for tag in item.get("tags") or []]})
    moment = item.get("published_parsed") or item.get("updated_parsed")
    if moment:
        record["created"] = datetime(*moment[:6], tzinfo=dt_timezone.utc)
    return record


def feed_title(item):
    """An item's title as text: feedparser gives an Atom `type="html"` title, or an RSS title with
    escaped markup, as HTML (`AT&amp;T`), which a link title would show as it is."""
    title = item.get("title") or ""
    if "html" in (item.get("title_detail") or {}).get("type", ""):
        title = html.unescape(strip_tags(title))
    return title


def open_feed_url(url):
    """Fetch a feed over HTTP(S) with a time limit; what comes back is parsed like a file."""
    try:
        with urlopen(Request(url, headers={"User-Agent": "linkblog-import"}), timeout=30) as response:
            return io.BytesIO(response.read(MAX_DOCUMENT_BYTES + 1))
    except HTTPError as error:
        raise ImportFailed(f"could not fetch {url}: HTTP {error.code} {error.reason}")
    except (OSError, ValueError) as error:
        raise ImportFailed(f"could not fetch {url}: {getattr(error, 'reason', error)}")


def detect_format(stream):
    """Guess the format from the first bytes: NDJSON, Pinboard JSON, bookmarks HTML, or a feed."""
    head = stream.read(4096)
    stream.seek(0)
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff").lstrip()
    lowered = text[:2048].lower()
    if text.startswith("{"):
        return "ndjson"
    if text.startswith("["):
        return "pinboard"
    if "netscape-bookmark-file" in lowered or re.match(r"(<!--.*?-->\s*)*<(dl|dt|meta|title|h1)\b", lowered, re.S):
        return "netscape"
    if re.search(r"<(rss|feed|rdf:rdf)\b", lowered):
        return "feed"
    raise ImportFailed("cannot tell the file's format: give --format ndjson, netscape, pinboard or feed")


# Validating: one record of the file against the model's rules


def export_created(moment):
    return moment.astimezone(dt_timezone.utc).isoformat()


def export_ndjson(models, tags, include_drafts=True):
    """Lines of our NDJSON: `tags` (a queryset) by name, then posts by created, kind and slug; keys in a
    fixed order (each kind's `export_fields` between "slug" and "created")."""
    for tag in tags.order_by("tag").iterator(2000):
        yield json_line({"type": "tag", "tag": tag.tag, "description": tag.description})
    for kind, post in exported_posts(models, include_drafts):
        record = {"type": kind, "slug": post.slug}
        record.update((name, getattr(post, name)) for name in post.export_fields)
        record.update(created=export_created(post.created), tags=sorted(tag.tag for tag in post.tags.all()),
                      is_draft=post.is_draft)
        yield json_line(record)


def json_line(record):
    return json.dumps(record, ensure_ascii=False) + "\n"


def exported_posts(models, include_drafts):
    """(kind, post) for every post of these models, oldest first, merged across kinds without loading all."""
    streams = [sorted_posts(kind, model, include_drafts) for kind, model in models.items()]
    for _, kind, post in heapq.merge(*streams, key=lambda item: item[0]):
        yield kind, post


def sorted_posts(kind, model, include_drafts):
    posts = model.objects.all() if include_drafts else model.objects.published()
    for post in posts.order_by("created", "slug").prefetch_related("tags").iterator(2000):
        yield (post.created, kind, post.slug), kind, post


def export_netscape(blogmark_model, include_drafts=True):
    """The blogmarks as a browser bookmarks file (entries and quotations are not bookmarks)."""
    yield get_template("export/bookmarks_start.html").render({})
    bookmark = get_template("export/bookmark.html")
    for _, post in exported_posts({"blogmark": blogmark_model}, include_drafts):
        yield bookmark.render({"post": post, "add_date": int(post.created.timestamp()),
                               "tags": ",".join(sorted(tag.tag for tag in post.tags.all()))})
    yield get_template("export/bookmarks_end.html").render({})
