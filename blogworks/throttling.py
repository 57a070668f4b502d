"""Login throttling with django-axes: which address a login comes from, and which logins it watches.

Axes counts failed logins per username and address and locks the pair out after too many (settings
in linkblog.py, README "Login throttling"). Behind a reverse proxy every request comes from the
proxy, so the client's address is read from X-Forwarded-For, but only as far as LINKBLOG_PROXY_COUNT
trusted proxies vouch for it: a client can write anything into that header itself.
"""

from axes.backends import AxesStandaloneBackend
from django.conf import settings


def client_ip_address(request):
    """The client's address: REMOTE_ADDR, or with N trusted proxies in front the address the
    outermost of them saw (the Nth entry of X-Forwarded-For counted from the right)."""
    proxies = settings.LINKBLOG_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies > 0 and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


class LoginThrottle(AxesStandaloneBackend):
    """Axes' check before any other backend. A login without a request (a shell, a script calling
    authenticate()) comes from no address and is not throttled; every web login has one."""

    def authenticate(self, request=None, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
