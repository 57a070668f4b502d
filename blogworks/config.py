"""Settings from the environment: the helpers linkblog.py's `Django(...)` call reads its settings with.

Everything a deployment changes comes from an environment variable (README lists them). A malformed
value stops the app with one clear line, never a traceback.
"""

import os
import sys

import dj_database_url

from .database import LOCK_WAIT_MILLISECONDS, postgresql_options

INSECURE_SECRET_KEY = "linkblog-insecure-development-key"


def env_bool(name, default):
    """Read a yes/no environment variable: 1/true/yes/on or 0/false/no/off."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in ("1", "true", "yes", "on")


def env_list(name, default):
    """Read a comma-separated environment variable into a list."""
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()] or default


def cached_template_loaders(templates):
    """nanodjango lists its template loaders bare, so every include is parsed again on every request;
    Django's cached loader keeps each parsed template (and runserver still reloads edited ones). The
    engine is Django's, handing out templates whose contexts let go once rendered (serving.py)."""
    options = templates[0]["OPTIONS"]
    options["loaders"] = [("django.template.loaders.cached.Loader", options["loaders"])]
    templates[0]["BACKEND"] = "blogworks.serving.ReleasingTemplates"
    return templates


SQLITE_CACHE_KIB = 8192


def database_settings(base_dir):
    """DATABASE_URL when given (PostgreSQL), otherwise the SQLite file db.sqlite3 in `base_dir`."""
    default_url = "sqlite:///" + str(base_dir / "db.sqlite3")
    config = dj_database_url.parse(os.environ.get("DATABASE_URL", default_url))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {
            # A web workload on SQLite: readers never block the writer, a writer waits
            # its turn instead of failing, and a transaction takes the write lock up front.
            # An 8 MiB page cache (SQLite's default is 2): a search at 100,000 posts reads about
            # 1,200 posts' pages, and with 2 MiB each read went back to the file (3.3 against
            # 1.0 ms); the cache grows only as pages are read, so a small blog pays nothing.
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-{SQLITE_CACHE_KIB};",
            "timeout": LOCK_WAIT_MILLISECONDS / 1000,
            "transaction_mode": "IMMEDIATE",
        }
    else:
        config["CONN_HEALTH_CHECKS"] = True
        config["OPTIONS"] = postgresql_options(config.get("OPTIONS", {}))
    # A worker keeps its connection between requests: a new one costs about a millisecond (for
    # SQLite: opening the file, the PRAGMAs above, and starting with an empty page cache).
    config["CONN_MAX_AGE"] = 60
    return config


def env_int(name, default):
    """Read a whole-number environment variable; a malformed one stops the app with a clear message."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        sys.exit(f"linkblog: {name} must be a whole number, not {value!r}")


def env_url(name, default=""):
    """Read an http(s) URL (without a trailing slash); "" when both the variable and `default` are empty
    (the feature it names is off). Anything else stops the app with a clear message."""
    value = os.environ.get(name, "").strip() or default
    if value and not value.lower().startswith(("http://", "https://")):
        sys.exit(f"linkblog: {name} must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def link_checker_user_agent():
    """How the link checker and the archive requests introduce themselves: the blog's name and
    address, so a site owner who sees them knows whom to ask (LINKBLOG_LINKCHECK_USER_AGENT)."""
    title = os.environ.get("LINKBLOG_TITLE", "linkblog")
    base_url = os.environ.get("LINKBLOG_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    return os.environ.get("LINKBLOG_LINKCHECK_USER_AGENT", "").strip() or f"{title} link checker (+{base_url}/)"


def secret_key(debug):
    """DJANGO_SECRET_KEY; production (DEBUG off) never runs with the well-known development key."""
    key = os.environ.get("DJANGO_SECRET_KEY", "").strip() or INSECURE_SECRET_KEY
    if not debug and key == INSECURE_SECRET_KEY:
        sys.exit(
            "linkblog: refusing to start with DJANGO_DEBUG off and no DJANGO_SECRET_KEY. "
            'Set one, e.g. DJANGO_SECRET_KEY="$(python -c \'import secrets; print(secrets.token_urlsafe(50))\')"'
        )
    return key


def cache_settings(base_dir):
    """The cache every worker shares: a DiskCache directory by default, Redis or memcached by URL."""
    url = os.environ.get("LINKBLOG_CACHE_URL", "").strip()
    scheme = url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        config = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    elif scheme == "memcached":
        config = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": url.partition("://")[2]}
    elif url:
        sys.exit(f"linkblog: LINKBLOG_CACHE_URL must start with redis://, rediss:// or memcached://, not {url!r}")
    else:
        directory = os.environ.get("LINKBLOG_CACHE_DIR") or str(base_dir / "cache")
        # DiskCache keeps entries in SQLite files: shared by every worker process on this machine.
        config = {"BACKEND": "blogworks.serving.PersistentDiskCache", "LOCATION": directory, "DATABASE_TIMEOUT": 1.0}
    return {"default": {**config, "KEY_PREFIX": "linkblog", "TIMEOUT": 3600}}


def proxy_ssl_header():
    """The header a TLS-terminating proxy sets to say the request came over HTTPS ("" trusts none)."""
    header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto").strip()
    if not header:
        return None
    return ("HTTP_" + header.upper().replace("-", "_"), "https")



# A Content-Security-Policy our own pages and the admin satisfy: no inline scripts or styles anywhere,
# images from anywhere over HTTPS (posts may show them), nothing may frame the site.
DEFAULT_CSP = (
    "default-src 'self'; img-src 'self' https: data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def logging_settings():
    """Django's errors (a 500 with its traceback, a refused Host) to stderr, where gunicorn's own log
    goes; without this Django hands them to mail_admins in production, which nobody configured.
    Warnings such as 404s stay out: they would bury the errors."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"timestamped": {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "timestamped"}},
        "loggers": {"django": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
    }


def env_handle(name, default):
    """An account name for the fediverse (`author` in @author@host): letters, digits and _ only."""
    value = os.environ.get(name, "").strip() or default
    if not value.replace("_", "").isalnum() or not value.isascii():
        sys.exit(f"linkblog: {name} may hold only letters, digits and _, not {value!r}")
    return value

