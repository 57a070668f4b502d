"""Under load and faults: the production server with several workers, concurrent writers and readers,
and a worker killed mid-load. No 5xx, no "database is locked", no acknowledged write lost.

Runs on SQLite, and on PostgreSQL with --postgres. Bounded (about 12 s of load) and loopback only.
"""

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from api_server import fresh_database_url
from production_server import ROOT, Browser, ProductionServer, manage, production_environment

import conftest

LOAD_SECONDS = 12
WRITERS = 3
READERS = 3
PASSWORD = "load-test-password-1"
# What a client sees when the worker serving it is killed: the connection reset, or the answer cut
# off part way (http.client raises IncompleteRead, not an OSError).
CUT_OFF = (OSError, http.client.HTTPException)


class Outcome:
    """What the clients saw, shared by every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged = {}  # title -> body, for writes the server confirmed
        self.server_errors = []
        self.connection_errors = []
        self.reads = 0

    def record(self, kind, item):
        with self.lock:
            getattr(self, kind).append(item)


def write_entries(base, username, number, outcome, stop):
    try:
        browser = Browser(base).log_in(username, PASSWORD)
    except (AssertionError, OSError) as error:
        outcome.record("server_errors", ("log in", repr(error)[:500]))
        return
    sequence = 0
    while not stop.is_set():
        sequence += 1
        title = f"Load {number}-{sequence}"
        body = f"Written by writer {number}, post {sequence}: *acknowledged* means kept."
        now = datetime.now(timezone.utc)
        try:
            status, _, form = browser.request("/admin/linkblog/entry/add/")
            if status >= 500:
                outcome.record("server_errors", (status, "add form", form[:500]))
                continue
            status, headers, html = browser.request(
                "/admin/linkblog/entry/add/",
                {
                    "csrfmiddlewaretoken": browser.csrf_token(form),
                    "title": title, "slug": "", "body": body,
                    "created_0": now.strftime("%Y-%m-%d"), "created_1": now.strftime("%H:%M:%S"),
                    "_save": "Save",
                },
            )
        except CUT_OFF as error:  # the worker serving it was killed: not acknowledged, not an error
            outcome.record("connection_errors", repr(error))
            continue
        if status == 302:
            with outcome.lock:
                outcome.acknowledged[title] = body
        elif status >= 500 or "database is locked" in html:
            outcome.record("server_errors", (status, title, html[:500]))
        else:
            outcome.record("server_errors", (status, f"write refused: {title}", html[:500]))


def read_pages(base, outcome, stop):
    browser = Browser(base)
    paths = ["/", "/tags/", "/?page=2", "/admin/login/"]
    index = 0
    while not stop.is_set():
        path = paths[index % len(paths)]
        index += 1
        try:
            status, _, html = browser.request(path)
        except CUT_OFF as error:
            outcome.record("connection_errors", repr(error))
            continue
        with outcome.lock:
            outcome.reads += 1
        if status >= 500 or "database is locked" in html:
            outcome.record("server_errors", (status, path, html[:500]))
        elif path != "/?page=2" and status != 200:  # page 2 is 404 until 30 posts exist
            outcome.record("server_errors", (status, path, html[:500]))


def stored_entries(env):
    """Every entry's title and body, read straight from the database after the server stopped."""
    script = (
        "import json, linkblog\n"
        "print(json.dumps(dict(linkblog.Entry.objects.values_list('title', 'body'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def online_backup_titles(database_url):
    """README's backup taken while serving (SQLite's online backup, or pg_dump then pg_restore): its entry titles."""
    target = Path(tempfile.mkdtemp(prefix="linkblog-backup-"))
    if database_url.startswith("sqlite"):
        source = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        backup = sqlite3.connect(target / "backup.sqlite3")
        source.backup(backup)
        source.close()
        assert backup.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {title for (title,) in backup.execute("SELECT title FROM linkblog_entry")}
    dump = target / "linkblog.dump"
    run_tool(["pg_dump", "-Fc", "-f", str(dump), database_url])
    restored = fresh_database_url(conftest.POSTGRES)
    run_tool(["pg_restore", "--clean", "--if-exists", "--no-owner", "-d", restored, str(dump)])
    import psycopg

    with psycopg.connect(restored) as connection:
        return {title for (title,) in connection.execute("SELECT title FROM linkblog_entry")}


def run_tool(args):
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def environment():
    env = production_environment(fresh_database_url(conftest.POSTGRES))
    assert manage(env, "migrate", "--noinput").returncode == 0
    for number in range(WRITERS):
        created = manage(
            {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
            "createsuperuser", "--noinput", "--username", f"writer{number}", "--email", "",
        )
        assert created.returncode == 0, created.stderr
    return env


def test_concurrent_writers_and_readers_with_a_worker_killed_lose_nothing(environment):
    server = ProductionServer(environment, workers=3).start()
    outcome, stop = Outcome(), threading.Event()
    threads = [threading.Thread(target=write_entries, args=(server.base, f"writer{n}", n, outcome, stop)) for n in range(WRITERS)]
    threads += [threading.Thread(target=read_pages, args=(server.base, outcome, stop)) for _ in range(READERS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(LOAD_SECONDS / 2)
        with outcome.lock:
            acknowledged_before_backup = dict(outcome.acknowledged)
        backed_up = online_backup_titles(environment["DATABASE_URL"])
        killed = server.worker_pids()[0]
        os.kill(killed, signal.SIGKILL)
        time.sleep(LOAD_SECONDS / 2)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        replacement_workers = server.worker_pids()
        _, _, home = Browser(server.base).request("/")
    finally:
        stop.set()
        server.stop()
    log = server.output()

    assert killed not in replacement_workers and len(replacement_workers) == 3  # gunicorn replaced it
    assert not outcome.server_errors, outcome.server_errors[:5]
    assert "database is locked" not in log
    assert not re.search(r'HTTP/1\.1" 5\d\d ', log)
    assert len(outcome.acknowledged) >= 10 and outcome.reads >= 50, (len(outcome.acknowledged), outcome.reads)
    # Only requests the killed worker was serving can fail, at most one per client.
    assert len(outcome.connection_errors) <= WRITERS + READERS, outcome.connection_errors
    print(f"\nload: {len(outcome.acknowledged)} acknowledged writes, {outcome.reads} reads, {len(outcome.connection_errors)} connection errors")
    stored = stored_entries(environment)
    missing = {title: body for title, body in outcome.acknowledged.items() if stored.get(title) != body}
    assert not missing, f"{len(missing)} acknowledged writes lost or changed: {list(missing)[:5]}"
    # README's online backup, taken while writers were writing, holds every write acknowledged before it.
    assert set(acknowledged_before_backup) <= backed_up and len(acknowledged_before_backup) > 0
    # Every worker shares the cache, so the last acknowledged post already shows on the home page.
    last = list(outcome.acknowledged)[-1]
    assert f">{last}<" in home, (last, home[:2000])
