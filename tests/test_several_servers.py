"""README's "Growing: several app servers", as it runs: two `serve-production` servers on one
PostgreSQL and one Redis (LINKBLOG_CACHE_URL, page cache on), writers and readers on both at once.

Every acknowledged write is kept, and a write on one server shows at once on the other's cached
pages. Runs in every run: on the suite's PostgreSQL with --postgres, otherwise on one started for it
(conftest's `postgres` fixture), with Debian's redis-server (`redis`). Bounded in count and time.
"""

import html
import subprocess
import sys
import threading
import time

import pytest
from api_server import api_request, fresh_database_url
from production_server import ROOT, Browser, ProductionServer, manage, production_environment

PASSWORD = "several-servers-password-1"
WRITERS_PER_SERVER = 2
READERS_PER_SERVER = 2
WRITES_PER_WRITER = 15
LOAD_SECONDS = 60  # a bound on the whole load, not a speed to reach


@pytest.fixture(scope="module")
def servers(postgres, redis):
    """Two app servers with the same settings, started one after the other as README's upgrades say
    (the first applies the migrations); a superuser's API token."""
    env = production_environment(fresh_database_url(postgres), LINKBLOG_CACHE_URL=redis.url, LINKBLOG_PAGE_CACHE="1")
    started = []
    try:
        for _ in range(2):
            started.append(ProductionServer(env, workers=2).start())
        created = manage({**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}, "createsuperuser", "--noinput",
                         "--username", "author", "--email", "")
        assert created.returncode == 0, created.stderr
        token = subprocess.run([sys.executable, "linkblog.py", "token", "author"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120, check=True).stdout.strip()
        yield started, token
    finally:
        for server in started:
            server.stop()


def entry(title, *tags):
    return {"title": title, "body": f"{title}: written on one server, read on the other.", "tags": list(tags)}


def assert_cached(browser, path):
    browser.request(path)
    status, headers, _ = browser.request(path)
    assert status == 200 and headers["X-Page-Cache"] == "hit", (path, status, headers)


def test_a_write_on_one_server_shows_at_once_on_the_others_cached_pages(servers):
    (first, second), token = servers
    for writer, reader in ((first, second), (second, first)):
        browser = Browser(reader.base)
        for path in ("/", "/tags/", "/atom/everything/"):
            assert_cached(browser, path)
        title = f"Written on {writer.base}"
        status, post, _ = api_request(writer.base, "POST", "/api/entries", entry(title, "elsewhere"), token)
        assert status == 201, post
        for path in ("/", "/atom/everything/"):
            assert title in browser.request(path)[2], path
        assert 'href="/tags/elsewhere/"' in browser.request("/tags/")[2]
        # An edit and a delete too: the other server's pages follow at once.
        status, _, _ = api_request(writer.base, "PATCH", f"/api/entries/{post['id']}", {"title": title + ", edited"}, token)
        assert status == 200
        assert title + ", edited" in browser.request("/")[2]
        assert api_request(writer.base, "DELETE", f"/api/entries/{post['id']}", token=token)[0] == 204
        assert title not in browser.request("/")[2]


def test_a_logged_in_author_is_served_by_either_server(servers):
    (first, second), _ = servers
    author = Browser(first.base).log_in("author", PASSWORD)
    elsewhere = Browser(second.base)
    elsewhere.cookies = dict(author.cookies)  # the load balancer sends the next request to the other server
    status, _, page = elsewhere.request("/admin/")
    assert status == 200 and "Site administration" in page, (status, page[:500])


class Outcome:
    """What the clients saw, shared by every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged = set()  # titles of writes the servers confirmed
        self.problems = []  # server errors, refused writes, stale pages
        self.reads = 0

    def problem(self, *what):
        with self.lock:
            self.problems.append(what)


def write_posts(writer, reader, number, token, outcome, deadline):
    """Post entries on `writer`; after each, the other server's home page must already show it."""
    browser = Browser(reader.base)
    for sequence in range(WRITES_PER_WRITER):
        if time.monotonic() > deadline:
            return
        title = f"Writer {number} post {sequence}"
        try:
            status, body, _ = api_request(writer.base, "POST", "/api/entries", entry(title, "load", f"writer-{number}"), token)
            if status != 201:
                outcome.problem("write", status, title, body)
                continue
            with outcome.lock:
                outcome.acknowledged.add(title)
            status, _, page = browser.request("/")
        except OSError as error:
            outcome.problem("connection", title, repr(error))
            continue
        if status != 200 or title not in html.unescape(page):
            outcome.problem("stale", status, title, reader.base)


def read_pages(server, outcome, stop):
    """An anonymous reader: the cached pages and feeds, and the API."""
    browser = Browser(server.base)
    paths = ["/", "/tags/", "/tags/load/", "/atom/everything/", "/api/items?tag=load", "/search/?q=writer"]
    index = 0
    while not stop.is_set():
        path = paths[index % len(paths)]
        index += 1
        try:
            status, _, page = browser.request(path)
        except OSError as error:
            outcome.problem("connection", path, repr(error))
            continue
        with outcome.lock:
            outcome.reads += 1
        if status >= 500 or (status != 200 and path != "/tags/load/"):  # 404 until the first post
            outcome.problem("read", status, path, page[:300])


def stored_titles(server, token):
    status, page, _ = api_request(server.base, "GET", "/api/entries?tag=load&limit=200", token=token)
    assert status == 200, page
    return {item["title"] for item in page["items"]}


def test_writers_and_readers_on_both_servers_lose_nothing_and_see_every_write(servers):
    (first, second), token = servers
    outcome, stop = Outcome(), threading.Event()
    deadline = time.monotonic() + LOAD_SECONDS
    writers = [threading.Thread(target=write_posts, args=(writer, reader, 10 * side + number, token, outcome, deadline))
               for side, (writer, reader) in enumerate(((first, second), (second, first)))
               for number in range(WRITERS_PER_SERVER)]
    readers = [threading.Thread(target=read_pages, args=(server, outcome, stop))
               for server in (first, second) for _ in range(READERS_PER_SERVER)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(timeout=LOAD_SECONDS + 60)
    stop.set()
    for thread in readers:
        thread.join(timeout=60)

    print(f"\nseveral servers: {len(outcome.acknowledged)} acknowledged writes, {outcome.reads} reads")
    assert not outcome.problems, outcome.problems[:5]
    assert len(outcome.acknowledged) >= 2 * WRITERS_PER_SERVER * 3 and outcome.reads >= 20, (len(outcome.acknowledged), outcome.reads)
    for server in (first, second):
        assert outcome.acknowledged <= stored_titles(server, token), server.base
    for server in (first, second):
        assert not any(marker in server.output() for marker in ('" 500 ', '" 502 ', '" 503 ', "Traceback")), server.output()[-3000:]
