"""
Test setup: the real app, a real SQLite file, and with --postgres a real PostgreSQL server.

`pytest` runs everything on SQLite; `pytest --postgres` starts a throwaway PostgreSQL 15 server
(initdb/pg_ctl in a temporary directory) and runs the same tests against it via DATABASE_URL.
"""

import os
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

POSTGRES = None


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


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """Tests run without collectstatic, so templates use the plain (unhashed) static storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def make():
    """Factories for the models: make.entry(...), make.blogmark(...), make.quotation(...), make.tag(...)."""
    from factories import Factories

    return Factories()
