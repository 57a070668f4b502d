"""Serving: security headers, the shared cache of anonymous pages, and templates that let go.

The page cache keeps whole responses for anonymous GETs in Django's cache (DiskCache files on one
server, Redis or memcached on several), under a "generation" that every visible write replaces:
`posts_changed` makes every cached page unreachable at once, in every worker and on every server.

A post dated in the future ("scheduled") changes pages when its moment comes, with no write to
announce it. So each generation also records the next scheduled moment (asked of the function the
site registers with `watch_schedule`, once per generation, when its first page is stored); the first
request at or after it starts a new generation (pages stored before it become unreachable), and
browsers are told to keep a page (`max-age`) no longer than the time left until it.
"""

import hashlib
import math
import uuid

from diskcache import DjangoCache
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpResponse
from django.template import TemplateDoesNotExist
from django.template.backends.django import DjangoTemplates, Template, reraise
from django.template.context import make_context
from django.utils import timezone
from django.utils.cache import has_vary_header, patch_cache_control

from .signals import posts_changed

class ContentSecurityPolicyMiddleware:
    """Adds the LINKBLOG_CSP Content-Security-Policy header to every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.LINKBLOG_CSP:
            response.headers.setdefault("Content-Security-Policy", settings.LINKBLOG_CSP)
        return response


class PersistentDiskCache(DjangoCache):
    """DiskCache that keeps its SQLite connection between requests. Django closes every cache when a
    request ends, and DiskCache then reopens its file and re-runs its PRAGMAs on the next one: that
    cost more than serving a whole cached page (the connection is per thread)."""

    def close(self, **kwargs):
        pass


PAGE_GENERATION_KEY = "page-generation"

# The site's function that says when the next scheduled post goes live (an aware datetime, or None).
SCHEDULE = {"next_moment": lambda: None}


def watch_schedule(next_scheduled_moment):
    """Register the site's function that says when the next scheduled post goes live."""
    SCHEDULE["next_moment"] = next_scheduled_moment


def current_generation():
    """The generation cached pages are stored under now: every visible write starts a new one, and so
    does the first request once the next scheduled post is live."""
    generation = cache.get(PAGE_GENERATION_KEY)
    if generation is None:
        cache.add(PAGE_GENERATION_KEY, uuid.uuid4().hex, timeout=None)
        generation = cache.get(PAGE_GENERATION_KEY)
    known = cache.get(f"page-schedule:{generation}")  # None until a page of this generation was stored
    if known and known["at"] is not None and timezone.now() >= known["at"]:
        forget_cached_pages()  # a scheduled post has just gone live
        generation = cache.get(PAGE_GENERATION_KEY)
    return generation


def next_scheduled_moment(generation):
    """When the next scheduled post goes live, asked of the site once per generation (when its first
    page is stored, so that pages never stored, like 404s, never touch the database)."""
    key = f"page-schedule:{generation}"
    known = cache.get(key)
    if known is None:
        known = {"at": SCHEDULE["next_moment"]()}
        cache.set(key, known, timeout=None)
    return known["at"]


def seconds_until(moment, longest):
    """How long a browser may keep a page: `longest` seconds, or less when a scheduled post goes live
    sooner (at least 1 s: the request that passes the moment starts a new generation)."""
    if moment is None:
        return longest
    return min(longest, max(1, math.ceil((moment - timezone.now()).total_seconds())))


def forget_cached_pages(**kwargs):
    """Make every cached page unreachable, in every worker: the generation is part of every key."""
    cache.set(PAGE_GENERATION_KEY, uuid.uuid4().hex, timeout=None)


def forget_cached_pages_now_and_after_commit(**kwargs):
    """Now (so the writer's own next read is fresh) and after commit (so a page rendered
    from the old rows by a reader in between is never served)."""
    forget_cached_pages()
    transaction.on_commit(forget_cached_pages)


def connect_cache_invalidation():
    posts_changed.connect(forget_cached_pages_now_and_after_commit, dispatch_uid="forget-cached-pages")


connect_cache_invalidation()


class AnonymousPageCacheMiddleware:
    """Serves anonymous GETs of public pages and feeds from the shared cache.

    A request carrying a session cookie (a logged-in author) is never answered from the cache and
    never fills it; neither are the admin and the API, nor responses that set cookies or say
    they are private.
    """

    EXCLUDED_PREFIXES = ("/admin/", "/api/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not self.is_cacheable_request(request):
            return self.get_response(request)
        generation = current_generation()
        key = self.cache_key(request, generation)
        stored = cache.get(key)
        if stored is not None:
            return self.cached_response(*stored)
        response = self.get_response(request)
        if self.is_cacheable_response(response):
            max_age = seconds_until(next_scheduled_moment(generation), settings.LINKBLOG_PAGE_MAX_AGE)
            patch_cache_control(response, public=True, max_age=max_age)
            cache.set(key, (response.status_code, dict(response.items()), response.content))
        response["X-Page-Cache"] = "miss"
        return response

    @staticmethod
    def cached_response(status, headers, body):
        """A stored page, its body in one piece: a feed is written in hundreds of small chunks, and
        sending them one by one made a cached feed far slower than a cached page."""
        response = HttpResponse(body, status=status, headers=headers)
        response["X-Page-Cache"] = "hit"
        return response

    def is_cacheable_request(self, request):
        return (
            settings.LINKBLOG_PAGE_CACHE
            and request.method in ("GET", "HEAD")
            and settings.SESSION_COOKIE_NAME not in request.COOKIES
            and "HTTP_AUTHORIZATION" not in request.META
            and not request.path.startswith(self.EXCLUDED_PREFIXES)
        )

    def is_cacheable_response(self, response):
        cache_control = response.get("Cache-Control", "")
        return (
            response.status_code == 200
            and not response.streaming
            and not response.cookies
            and "private" not in cache_control
            and "no-cache" not in cache_control
            and "no-store" not in cache_control
            # The key is the URL alone: an answer that depends on Accept (an ActivityPub actor or
            # object, or a redirect to its page) must not be served to the other kind of client.
            and not has_vary_header(response, "Accept")
        )

    def cache_key(self, request, generation):
        url = f"{request.scheme}://{request.get_host()}{request.get_full_path()}"
        return f"page:{generation}:{hashlib.sha256(url.encode()).hexdigest()}"


class ReleasingTemplate(Template):
    """A Django template whose context lets go of what it held once the page is rendered.

    Each of a Context's dicts points back at the Context (django.template.context.ContextDict), so a
    rendered page's context is a reference cycle, freed only by the garbage collector. A request lives
    long enough for a collection to move it to the oldest generation, which is collected rarely: the
    search page's thousand sampled rows and thirty results then stayed in memory for hundreds of
    requests (a worker grew by 30 MB under load). Emptying the context's dicts breaks the cycle, and
    reference counting frees the page's objects as the response goes out. The test client keeps its
    own copy of each context."""

    def render(self, context=None, request=None):
        context = make_context(context, request, autoescape=self.backend.engine.autoescape)
        try:
            return self.template.render(context)
        except TemplateDoesNotExist as exc:
            reraise(exc, self.backend)
        finally:
            context.dicts.clear()


class ReleasingTemplates(DjangoTemplates):
    """Django's template engine, handing out ReleasingTemplates (TEMPLATES' BACKEND)."""

    def from_string(self, template_code):
        return ReleasingTemplate(self.engine.from_string(template_code), self)

    def get_template(self, template_name):
        try:
            return ReleasingTemplate(self.engine.get_template(template_name), self)
        except TemplateDoesNotExist as exc:
            reraise(exc, self)
