"""Text: Markdown rendered and sanitized, and the plain-text cuts pages make of stored HTML.

Posts are rendered once, when they are saved (a page view never runs Markdown), with Python-Markdown
(typographic quotes and dashes by its `smarty` extension), then cleaned by nh3 down to an allowlist of
tags, attributes and URL schemes, and old `http://` images are asked for over https (the site's
Content-Security-Policy allows only https images, as browsers upgrade mixed content). The rest turns stored
HTML into what listings and meta tags show: the first paragraph, plain words, a trimmed description,
search excerpts with the searched words marked.
"""

import re
import signal
import threading
from contextlib import contextmanager
from functools import lru_cache
from html import escape as html_escape, unescape
from html.parser import HTMLParser

import markdown
import nh3
from django.utils.html import conditional_escape, strip_tags
from django.utils.safestring import mark_safe

MARKDOWN_EXTENSIONS = ["extra", "sane_lists", "smarty"]
SAFE_URL_SCHEMES = {"http", "https", "mailto"}
SAFE_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p",
    "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
}
SAFE_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "code": {"class"},
    "li": {"id"},
    "sup": {"id"},
    "ol": {"start"},
}


markdown_converters = threading.local()


def markdown_converter():
    """This thread's Markdown converter: building one costs as much as converting a post, so reuse it."""
    if not hasattr(markdown_converters, "converter"):
        markdown_converters.converter = markdown.Markdown(extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return markdown_converters.converter.reset()


# Python-Markdown is quadratic or worse on some shapes of text: thousands of unmatched `[`, of quotes
# or emphasis markers in one paragraph, of one-line headings or rules in a row; a 200,000-character
# body of them took from a minute to hours, and a few (`1. ` or `a\n: b\n` repeated) overflow the
# stack. No real post comes near: past RENDER_SECONDS (or on that overflow) a text is shown as plain
# paragraphs instead, its Markdown kept as written.
RENDER_SECONDS = 2.0


class RenderTooSlow(Exception):
    """Raised inside a render that has run past RENDER_SECONDS."""


@contextmanager
def time_limit(seconds):
    """RenderTooSlow in this thread once `seconds` have passed, where a signal can deliver it: the main
    thread of a process (gunicorn's sync workers, the import's rendering processes, the command
    line), and only when no other timer is running there. Elsewhere (a threaded development
    server) there is no limit."""
    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_REAL)[0]:
        yield
        return

    def expire(signum, frame):
        raise RenderTooSlow()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render_markdown(text):
    """Markdown to HTML that is safe to show: no scripts, event handlers or javascript: URLs. A text
    too costly to render (see RENDER_SECONDS) comes out as plain paragraphs."""
    try:
        with time_limit(RENDER_SECONDS):
            html = markdown_converter().convert(text or "")
    except (RenderTooSlow, RecursionError):
        markdown_converters.__dict__.pop("converter", None)  # stopped halfway: the next render starts afresh
        html = plain_paragraphs(text)
    return sanitize_html(html)


def plain_paragraphs(text):
    """`text` as HTML paragraphs of its characters as typed (split at blank lines), no markup."""
    return "".join(f"<p>{html_escape(part.strip(), quote=False)}</p>" for part in re.split(r"\n\s*\n", text) if part.strip())


def sanitize_html(html):
    """HTML from anywhere (rendered Markdown, an imported feed) cut down to the safe allowlist, its
    images upgraded to https."""
    return upgrade_image_urls(nh3.clean(
        html or "",
        tags=SAFE_TAGS,
        attributes=SAFE_ATTRIBUTES,
        url_schemes=SAFE_URL_SCHEMES,
        link_rel="noopener",
    ))


# nh3 writes every attribute as name="value" with any " inside escaped, so an <img>'s src is found
# by skipping whole attributes, never by guessing where a quote ends.
HTTP_IMAGE = re.compile(r'(<img(?:\s+[\w:-]+(?:="[^"]*")?)*?\s+src=")http://', re.IGNORECASE)


def upgrade_image_urls(html):
    """Sanitized HTML with `http://` image URLs asked for over https, as browsers upgrade mixed content."""
    return HTTP_IMAGE.sub(r"\1https://", html)


def rendered_entry(markdown_text):
    """What an entry stores from its Markdown: the HTML, the first block as an excerpt, the word count."""
    html = render_markdown(markdown_text)
    return {"html": html, "excerpt_html": first_block(html), "word_count": len(plain_text(html).split())}


def is_safe_url(url):
    """True for the http(s) and mailto links a post may point to; never javascript: or data:."""
    scheme, colon, _ = (url or "").partition(":")
    return bool(colon) and scheme.strip().lower() in SAFE_URL_SCHEMES


class FirstBlockFinder(HTMLParser):
    """Finds where the first top-level element of an HTML fragment ends."""

    VOID = {"br", "hr", "img"}

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.depth = 0
        self.end = None

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.depth += 1
        elif self.depth == 0 and self.end is None:
            self.end = self.getpos()

    def handle_endtag(self, tag):
        self.depth -= 1
        if self.depth == 0 and self.end is None:
            self.end = self.getpos()


def first_block(html):
    """The first paragraph (or other top-level block) of rendered HTML."""
    finder = FirstBlockFinder()
    finder.feed(html)
    if finder.end is None:
        return html
    line, column = finder.end
    # The parser counts lines at "\n" only; str.splitlines() would also break at \f, \v, \x1c, \x85, U+2028 ...
    offset = sum(len(text) + 1 for text in html.split("\n")[: line - 1]) + column
    return html[: html.index(">", offset) + 1]



def plain_text(html):
    """Visible words of rendered HTML, for word counts and descriptions."""
    return " ".join(strip_tags(html).split())



DESCRIPTION_LENGTH = 200


def description(html):
    """Plain text of stored HTML for meta descriptions: no markup, no entities, trimmed on a word."""
    text = unescape(plain_text(html))
    if len(text) <= DESCRIPTION_LENGTH:
        return text
    return text[: DESCRIPTION_LENGTH - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def first_words(html, count=8):
    """The first `count` words of stored HTML as plain text, with "…" when there are more."""
    words = unescape(plain_text(html)).split()
    return " ".join(words[:count]).rstrip(",.;:") + ("…" if len(words) > count else "")


# XML 1.0 cannot carry C0 controls other than tab, newline and carriage return (Django's feed writer
# raises on them), nor U+FFFE and U+FFFF (a feed reader refuses the whole feed). Posts may hold them
# (pasted from a PDF, an old export); the site shows such posts.
NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(value):
    """`value` (a string, a list of them, or anything else as it is) without what XML cannot carry."""
    if isinstance(value, str):
        return NOT_IN_XML.sub("", value)
    if isinstance(value, (list, tuple)):
        return [xml_text(item) for item in value]
    return value


def highlight_pattern(words):
    """A pattern for any of the words at the start of a word, running to the word's end (so "test" marks "tests")."""
    return words_pattern(tuple(words))


@lru_cache(maxsize=64)
def words_pattern(words):
    # Kept per query: a search page asks for it three times for each of its thirty results.
    alternatives = "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(\b(?:{alternatives})\w*)", re.IGNORECASE)


def highlight(text, words):
    """Escape plain text, then wrap the searched words in <mark>: {{ post.title|highlight:query.highlight_words }}."""
    if not words:
        return conditional_escape(text)
    pieces = highlight_pattern(words).split(str(text))
    # split() with one group alternates text that did not match (even places) and matches (odd places).
    # html.escape is what Django's escape() runs, without its lazy-string wrapper: sixty calls a page.
    return mark_safe("".join(
        f"<mark>{html_escape(piece)}</mark>" if index % 2 else html_escape(piece) for index, piece in enumerate(pieces)
    ))


TAG = re.compile(r"<[^>]*>")


def search_text(html):
    """The text of rendered HTML on one line, entities decoded, each tag a space (so that words in
    neighbouring blocks stay apart; plain_text joins "is <em>it</em>." as written): what a search
    excerpt is cut from."""
    # Our own sanitized HTML, so a tag is `<...>`: a regex is ten times quicker than strip_tags's parser.
    return unescape(" ".join(TAG.sub(" ", html).split()))


def excerpt(text, words, length=240):
    """Plain `text` around the first searched word, at most `length` characters, cut between words."""
    found = highlight_pattern(words).search(text) if words else None
    start = max(0, found.start() - length // 3) if found else 0
    if start:
        start = text.find(" ", start) + 1 or start
    end = min(start + length, len(text))
    if end < len(text):  # cut before the word the limit falls in, not inside it
        space = text.rfind(" ", start, end + 1)
        end = space if space > start else end
    cut = text[start:end].rstrip()
    return ("… " if start else "") + cut + (" …" if end < len(text) else "")
