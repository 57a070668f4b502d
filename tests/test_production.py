"""Production settings and the production command, checked as a deployment runs them: as processes."""

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from api_server import fresh_database_url
from production_server import ROOT, Browser, ProductionServer, manage, production_environment, run_python

import conftest


def run_linkblog(env, *args):
    return subprocess.run(
        [sys.executable, "linkblog.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("key", [None, "", "linkblog-insecure-development-key"])
def test_production_refuses_the_insecure_default_secret_key_in_one_line(key):
    env = production_environment("sqlite:///" + tempfile.mkdtemp() + "/db.sqlite3")
    env.pop("DJANGO_SECRET_KEY")
    if key is not None:
        env["DJANGO_SECRET_KEY"] = key
    for args in (["manage", "check"], ["serve-production", "127.0.0.1:1"]):
        result = run_linkblog(env, *args)
        assert result.returncode != 0
        assert "refusing to start with DJANGO_DEBUG off and no DJANGO_SECRET_KEY" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_setting_is_a_one_line_error():
    env = production_environment("sqlite:///" + tempfile.mkdtemp() + "/db.sqlite3", DJANGO_SECURE_HSTS_SECONDS="a year")
    result = run_linkblog(env, "manage", "check")
    assert result.returncode != 0
    assert result.stderr.strip() == "linkblog: DJANGO_SECURE_HSTS_SECONDS must be a whole number, not 'a year'"
    env = production_environment("sqlite:///" + tempfile.mkdtemp() + "/db.sqlite3", LINKBLOG_CACHE_URL="ftp://x")
    result = run_linkblog(env, "manage", "check")
    assert result.returncode != 0 and "LINKBLOG_CACHE_URL must start with redis://" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_deploy_with_production_settings_reports_nothing():
    env = production_environment("sqlite:///" + tempfile.mkdtemp() + "/db.sqlite3", DJANGO_ALLOWED_HOSTS="blog.example.com")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_sqlite_connections_use_wal_a_5_second_busy_timeout_and_normal_sync():
    path = Path(tempfile.mkdtemp()) / "db.sqlite3"
    env = production_environment(f"sqlite:///{path}")
    script = (
        "import linkblog\n"
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    for name in ('journal_mode', 'busy_timeout', 'synchronous'):\n"
        "        cursor.execute('PRAGMA ' + name)\n"
        "        print(name, cursor.fetchone()[0])\n"
        "print('transaction_mode', connection.transaction_mode)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["journal_mode wal", "busy_timeout 5000", "synchronous 1", "transaction_mode IMMEDIATE"]
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def cache_backend(**env):
    script = "import linkblog\nfrom django.conf import settings\nc = settings.CACHES['default']\nprint(c['BACKEND'], c['LOCATION'])"
    environment = production_environment("sqlite:///" + tempfile.mkdtemp() + "/db.sqlite3", **env)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_cache_is_diskcache_by_default_and_redis_or_memcached_by_url():
    directory = tempfile.mkdtemp()
    # DiskCache's Django backend, kept open between requests (blogworks.serving.PersistentDiskCache subclasses it).
    assert cache_backend(LINKBLOG_CACHE_DIR=directory) == ["blogworks.serving.PersistentDiskCache", directory]
    assert cache_backend(LINKBLOG_CACHE_URL="redis://cache.internal:6379/1") == [
        "django.core.cache.backends.redis.RedisCache", "redis://cache.internal:6379/1"
    ]
    assert cache_backend(LINKBLOG_CACHE_URL="memcached://10.0.0.5:11211") == [
        "django.core.cache.backends.memcached.PyMemcacheCache", "10.0.0.5:11211"
    ]


@pytest.fixture(scope="module")
def server():
    env = production_environment(fresh_database_url(conftest.POSTGRES))
    server = ProductionServer(env, workers=2).start()
    yield server
    server.stop()


def test_hsts_and_secure_cookies_only_over_https_as_the_proxy_says(server):
    status, headers, _ = Browser(server.base).request("/", headers={"X-Forwarded-Proto": "http"})
    assert status == 200  # the proxy, not the app, redirects plain HTTP
    assert "Strict-Transport-Security" not in headers
    status, headers, _ = Browser(server.base).request("/admin/login/")
    assert "Strict-Transport-Security" in headers
    assert headers["Set-Cookie"].startswith("csrftoken=") and "; Secure" in headers["Set-Cookie"]


@pytest.mark.django_db
def test_the_app_redirects_to_https_itself_when_told_to(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/tags/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/tags/"
    assert client.get("/tags/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


def test_the_production_server_sends_security_headers_and_caches_pages(server):
    browser = Browser(server.base)
    status, headers, html = browser.request("/")
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "public, max-age=60"
    assert browser.request("/")[1]["X-Page-Cache"] == "hit"


def test_static_files_have_hashed_names_and_far_future_caching(server):
    status, _, html = Browser(server.base).request("/")
    stylesheet = next(line for line in html.splitlines() if "stylesheet" in line)
    href = stylesheet.split('href="')[1].split('"')[0]
    assert href.startswith("/static/linkblog.") and href.endswith(".css") and len(href.split(".")) == 3
    status, headers, css = Browser(server.base).request(href)
    assert status == 200 and "body" in css
    assert "immutable" in headers["Cache-Control"] and "max-age=315360000" in headers["Cache-Control"]


def test_the_production_server_never_serves_debug_pages(server):
    status, _, html = Browser(server.base).request("/tags/no-such-tag/")
    assert status == 404
    assert "Traceback" not in html and "DEBUG = True" not in html


def test_a_server_error_reaches_the_log_with_its_traceback():
    env = production_environment(fresh_database_url(conftest.POSTGRES))
    server = ProductionServer(env, workers=1).start()
    try:
        run_python(env, "from django.db import connection\n"
                        "connection.cursor().execute('ALTER TABLE linkblog_tag RENAME TO linkblog_tag_gone')")
        status, _, html = Browser(server.base).request("/tags/")
        assert status == 500
        assert "Traceback" not in html and "linkblog_tag" not in html  # the reader sees no details
        log = server.output()
        assert "[ERROR] django.request: Internal Server Error: /tags/" in log
        assert "Traceback (most recent call last):" in log and "linkblog_tag" in log
    finally:
        server.stop()
