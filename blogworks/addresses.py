"""What the routes' addresses share: the `tags` URL converter (`django` or `django+python`), and
the answers an address gets before its view runs: a 301 to its canonical form (tags in lower case,
months as `Jan`) keeping the query string, and a 400 page when it combines too many tags.
"""

from functools import wraps

from django.shortcuts import redirect, render
from django.urls import reverse

from . import rules
from .dates import canonical_month


class TagsConverter:
    """One tag (`django`) or several joined with `+` (`django+python`) in a URL, as a list of names."""

    regex = rf"{rules.TAG_NAME_PATTERN}(?:\+{rules.TAG_NAME_PATTERN})*"

    def to_python(self, value):
        return value.split("+")

    def to_url(self, value):
        return value if isinstance(value, str) else "+".join(value)


class TooManyTags(Exception):
    """A URL combines more tags than a page may: answered with a 400 page."""


def too_many_tags_is_400(view):
    """Answer TooManyTags with a 400 page that says what went wrong."""

    @wraps(view)
    def view_with_tag_limit(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except TooManyTags as error:
            return render(request, "400.html", {"message": str(error)}, status=400)

    return view_with_tag_limit


def lowercase_tags(view):
    """A 301 from an address that names a tag with capitals (`/tags/Django/`) to its lower-case form."""

    @wraps(view)
    def view_with_lowercase_tags(request, names, **kwargs):
        if any(name != name.lower() for name in names):
            return permanent_redirect(request, request.resolver_match.url_name, names=[name.lower() for name in names], **kwargs)
        return view(request, names, **kwargs)

    return view_with_lowercase_tags


def canonical_date_redirect(view):
    """A 301 from a date as people type it to the address the site writes: `/2008/jan/` (or
    /2008/january/, /2008/01/) to `/2008/Jan/`, and `/02008/` or `/2008/Jan/09/` to the numbers
    without their leading zeros, which the URL patterns accept; an unknown month goes on to the
    view's 404."""

    @wraps(view)
    def view_with_canonical_date(request, **kwargs):
        month = kwargs.get("month")
        if month is not None:
            kwargs["month"] = canonical_month(month) or month
        if kwargs.get("month") != month or "/0" in request.path:  # "/0": a number with a leading zero (or 0 itself)
            canonical = reverse(request.resolver_match.url_name, kwargs=kwargs)
            if canonical != request.path:
                return permanent_redirect(request, request.resolver_match.url_name, **kwargs)
        return view(request, **kwargs)

    return view_with_canonical_date


def permanent_redirect(request, url_name, **kwargs):
    """A 301 to the page `url_name` names with these URL arguments, keeping the query string."""
    query = request.GET.urlencode()
    return redirect(reverse(url_name, kwargs=kwargs) + (f"?{query}" if query else ""), permanent=True)
