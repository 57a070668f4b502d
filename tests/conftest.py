"""
Test setup: the real app, a real SQLite file, and with --postgres a real PostgreSQL server.

`pytest` runs everything on SQLite; `pytest --postgres` starts a throwaway PostgreSQL 15 server
(initdb/pg_ctl in a temporary directory) and runs the same tests against it via DATABASE_URL.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Playwright's sync API runs an event loop in the test thread; the ORM calls made beside it are
# ordinary synchronous calls, so Django's guard against async misuse does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# Tests run with the page cache on, as production does, in a cache directory of their own.
os.environ["LINKBLOG_PAGE_CACHE"] = "1"
os.environ["LINKBLOG_CACHE_DIR"] = tempfile.mkdtemp(prefix="linkblog-test-cache-")
os.environ.pop("LINKBLOG_CACHE_URL", None)
# The stand-ins for other servers (fediverse, Webmention senders, linked pages) all listen on
# 127.0.0.1, which production refuses to fetch (blogworks/netfetch.py); test_safety checks the refusal.
os.environ["LINKBLOG_FETCH_PRIVATE_ADDRESSES"] = "1"

POSTGRES = None

pytest_plugins = ["link_servers"]  # its fixtures: site, other_host, web_archive (local stand-ins for the web)


def pytest_addoption(parser):
    parser.addoption("--postgres", action="store_true", help="run against a throwaway PostgreSQL server")


def pytest_configure(config):
    global POSTGRES
    if config.getoption("--postgres"):
        from postgres_server import PostgresServer

        POSTGRES = PostgresServer().start()
        os.environ["DATABASE_URL"] = POSTGRES.url
    else:
        os.environ.pop("DATABASE_URL", None)

    import linkblog

    linkblog.app._prepare()
    from django.db import connections

    database = connections["default"].settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # The test database is a real SQLite file (with WAL), not an in-memory one.
        database["TEST"]["NAME"] = str(Path(tempfile.mkdtemp(prefix="linkblog-test-")) / "test.sqlite3")


def pytest_unconfigure(config):
    if POSTGRES is not None:
        POSTGRES.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for tests that need one in every run: the suite's own with --postgres,
    otherwise one started for them (and stopped at the end)."""
    if POSTGRES is not None:
        yield POSTGRES
        return
    from postgres_server import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis():
    """A Redis server (Debian's redis-server), for tests of the cache several app servers share."""
    from redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A migrated SQLite file, made once a module, for commands run in another process (copy it per test)."""
    database = tmp_path_factory.mktemp("template") / "blog.sqlite3"
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    subprocess.run(["nanodjango", "manage", "linkblog.py", "migrate", "-v0"], cwd=ROOT, env=environment, check=True, timeout=120)
    return database


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """Tests run without collectstatic, so templates use the plain (unhashed) static storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def clean_cache():
    """Every test starts with an empty page cache."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make():
    """Factories for the models: make.entry(...), make.blogmark(...), make.quotation(...), make.tag(...)."""
    from factories import Factories

    return Factories()


# --- A real browser: Debian's Chromium driven by Playwright -------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab (own cookies) that fails the test on any page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


@pytest.fixture
def artifacts():
    """Where tests save what a person would see (screenshots); CI keeps the folder."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
