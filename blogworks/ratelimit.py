"""Rate limits for the endpoints strangers POST to (the ActivityPub inbox, the Webmention endpoint).

A fixed window per client address and endpoint, counted in Django's shared cache, so every worker
and (with Redis or memcached) every server counts together. The client address is REMOTE_ADDR, or,
behind a proxy, the header LINKBLOG_CLIENT_IP_HEADER names (README: what to set in the proxy).
"""

import time
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse

WINDOW_SECONDS = 60


def client_address(request):
    """Who is asking: the proxy's header when one is configured, else the connection's address."""
    header = settings.LINKBLOG_CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header, "")
        # X-Forwarded-For lists every hop; the last one is what our own proxy saw.
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def allow(scope, client, limit, window=WINDOW_SECONDS):
    """Count one request of `client` to `scope`; False once more than `limit` came in this window."""
    key = f"ratelimit:{scope}:{client}:{int(time.time() // window)}"
    cache.add(key, 0, timeout=window + 1)
    try:
        return cache.incr(key) <= limit
    except ValueError:  # the window's key expired between add and incr: a fresh window
        cache.set(key, 1, timeout=window + 1)
        return True


def rate_limited(scope, setting_name):
    """A view decorator: 429 with Retry-After once a client sends more than the setting's number of
    requests a minute (0 switches the limit off)."""

    def decorate(view):
        @wraps(view)
        def limited_view(request, *args, **kwargs):
            limit = getattr(settings, setting_name)
            if limit and not allow(scope, client_address(request), limit):
                response = HttpResponse("Too many requests: try again in a minute.\n", status=429,
                                        content_type="text/plain; charset=utf-8")
                response["Retry-After"] = str(WINDOW_SECONDS)
                return response
            return view(request, *args, **kwargs)

        return limited_view

    return decorate
