"""Serving: security headers and the shared cache of anonymous pages.

The page cache keeps whole responses for anonymous GETs in Django's cache (DiskCache files on one
server, Redis or memcached on several), under a "generation" that every visible write replaces:
`posts_changed` makes every cached page unreachable at once, in every worker and on every server.
"""

import hashlib
import uuid

from diskcache import DjangoCache
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpResponse
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


def page_generation():
    """The current generation of cached pages: every visible write starts a new one."""
    generation = cache.get(PAGE_GENERATION_KEY)
    if generation is None:
        generation = uuid.uuid4().hex
        cache.add(PAGE_GENERATION_KEY, generation, timeout=None)
        generation = cache.get(PAGE_GENERATION_KEY, generation)
    return generation


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
        key = self.cache_key(request)
        stored = cache.get(key)
        if stored is not None:
            return self.cached_response(*stored)
        response = self.get_response(request)
        if self.is_cacheable_response(response):
            patch_cache_control(response, public=True, max_age=settings.LINKBLOG_PAGE_MAX_AGE)
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

    def cache_key(self, request):
        url = f"{request.scheme}://{request.get_host()}{request.get_full_path()}"
        return f"page:{page_generation()}:{hashlib.sha256(url.encode()).hexdigest()}"
