"""Rules: what a post's text and links may be, the same for every way in (admin, API, import).

The models declare their fields with these validators and WebURLField, so Django's own field
validation (the admin's forms, the API's clean_fields, the importer's field.clean) applies one set
of rules. Links are taken as a browser takes them: spaces and other characters are percent-encoded,
a non-ASCII host becomes IDNA; only what cannot be a web link is refused, named whole.
"""

import ipaddress
import re
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit, urlunsplit

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models

# The longest Markdown a post (or a tag's description) may hold. Every way in must take it whole:
# at most 12 bytes a character when encoded (a form's %F0%9F%98%80, a JSON "\ud83d\ude00"), 2.4 MB
# stays within Django's 2.5 MB request limit and within an NDJSON line (formats.MAX_LINE_BYTES, 4 MB).
MAX_TEXT_LENGTH = 200_000
MAX_URL_LENGTH = 1000
TAG_NAME_PATTERN = r"[-a-zA-Z0-9_]+"  # a tag's name is a slug: letters, digits, hyphens and underscores
# Slugs are unique per day, so a post's day needs a next day: 9999-12-31 has none.
LAST_DAY = datetime(9999, 12, 31, tzinfo=timezone.utc)

BROWSER_DROPS = re.compile(r"[\t\n\r]")  # a browser removes these anywhere in a URL it is given
C0_AND_SPACE = "".join(map(chr, range(0x21)))  # ... and these at its ends
FORBIDDEN_IN_HOST = re.compile(r"[\x00-\x20#%/<>?@\[\\\]^|\x7f]")  # WHATWG's forbidden host code points
# What a browser leaves as it is in a URL's path, query and fragment; the rest is percent-encoded
# ("%" too when it does not start an escape).
URL_SAFE = "!$&'()*+,-./:;=?@_~#[]|^"
PERCENT_NOT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def tag_name_as_stored(name):
    """A tag name as it is stored and checked, whichever way it came in: trimmed and lower case
    (" Django " is django; "\u212aelvin", with a Kelvin sign, is kelvin)."""
    return name.strip().lower()


def validate_text(value):
    """Text every database stores and every file carries: no NUL (PostgreSQL refuses it), no lone
    surrogate (not Unicode, so not UTF-8)."""
    if "\x00" in value:
        raise ValidationError("contains a NUL character (\\x00).", code="nul")
    try:
        value.encode("utf-8")  # far quicker than a search: it fails only on a lone surrogate
    except UnicodeEncodeError as error:
        raise ValidationError(f"contains a lone surrogate (\\u{ord(value[error.start]):04x}), which is not Unicode text.",
                              code="surrogate")


def validate_visible(value):
    """A title, source or text someone must see: at least one character that is not a space."""
    if not value.strip():
        raise ValidationError("must have a character that is not a space.", code="blank")


max_text_length = MaxLengthValidator(MAX_TEXT_LENGTH)
REQUIRED_TEXT = [validate_text, validate_visible]  # titles and sources (their length is the field's max_length)
LONG_TEXT = [validate_text, max_text_length]  # Markdown a post or tag may leave empty
REQUIRED_LONG_TEXT = [validate_text, validate_visible, max_text_length]  # a body or quotation


def web_url(value):
    """`value` as the link a browser would follow: percent-encoded where a browser would encode, an
    IDNA host for a non-ASCII name, otherwise unchanged (a link stored before keeps matching its
    bookmark). A ValidationError naming the whole value when it cannot be a web link."""
    validate_text(value)
    url = BROWSER_DROPS.sub("", value.strip(C0_AND_SPACE))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- a port that is not a number raises ValueError
        netloc = web_netloc(parts)
    except ValueError:
        netloc = None
    if netloc is None or parts.scheme.lower() not in ("http", "https"):
        raise ValidationError(f"“{value}” is not a web link (http:// or https://, then a host).", code="invalid")
    return urlunsplit((parts.scheme, netloc, quote_part(parts.path), quote_part(parts.query), quote_part(parts.fragment)))


def stored_web_url(value):
    """`value` as a link is stored (web_url), or None when it cannot be a web link: for finding a link
    as people type or paste it."""
    try:
        return web_url(value)
    except ValidationError:
        return None


def web_netloc(parts):
    """A URL's user, host and port as a browser sends them (IDNA for a non-ASCII host), or None if
    its host cannot be one."""
    host = parts.hostname or ""
    if ":" in host:
        ipaddress.IPv6Address(host)  # ValueError if it is not one
        return parts.netloc
    if not host or FORBIDDEN_IN_HOST.search(host):
        return None
    if parts.netloc.isascii():
        return parts.netloc
    userinfo, at, host_and_port = parts.netloc.rpartition("@")
    host, colon, port = host_and_port.partition(":")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return f"{quote_part(userinfo)}{at}{host}{colon}{port}"


def quote_part(text):
    """Percent-encode what a browser would, leaving existing %XX escapes alone (so it can run twice)."""
    return quote(PERCENT_NOT_ESCAPE.sub("%25", text), safe=URL_SAFE + "%")


class WebURLFormField(forms.CharField):
    """The admin's input for a link: any text, made a web link by the model field's rule."""

    widget = forms.URLInput

    def to_python(self, value):
        value = super().to_python(value)
        return web_url(value) if value else value


class WebURLField(models.URLField):
    """A link to a web page, stored percent-encoded as a browser would send it (web_url)."""

    default_validators = [validate_text]

    def to_python(self, value):
        value = (super().to_python(value) or "").strip()
        return web_url(value) if value else value

    def get_prep_value(self, value):
        # Saved and queried as given: CharField's own would run to_python, and refuse old links on save.
        return models.Field.get_prep_value(self, value)

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": WebURLFormField, **kwargs})

    def deconstruct(self):
        """Migrations see the URLField it was: the same column, and a new class would make SQLite
        rebuild the table (the search index's triggers forbid that)."""
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.URLField", args, kwargs
