"""A busy database as a real server meets it: another program holds SQLite's write lock (or a
PostgreSQL lock) while API callers read and write.

A read never fails because of bookkeeping (recording a token's last use is a write that gives up at
once); a write that cannot get the lock answers 503 JSON with Retry-After; a body over the size
limit is a JSON 413. Runs on SQLite and on PostgreSQL in every run (the `postgres` fixture).
"""

import json
import sqlite3
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
from api_server import OPENER, ApiServer

ENTRY = {"title": "Written while busy", "body": "Some *text*.", "tags": ["busy"]}


def call(server, method, path, payload=None, token=None, timeout=30):
    """One request, whatever the answer's type: (status, headers, text)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or server.token}"}
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(server.base + path, data=data, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def fresh_token(server):
    """A token never used yet, so that its first use records itself (a write)."""
    return server.run("linkblog.py", "token", "api", "--name", "busy").stdout.strip()


def assert_json_problem(status, headers, text, expected_status):
    assert status == expected_status, (status, text[:500])
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(text)["detail"]


@pytest.fixture(scope="module")
def sqlite_server():
    server = ApiServer().start()  # always SQLite: the write lock under test is SQLite's
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_server(postgres):
    server = ApiServer(postgres).start()
    yield server
    server.stop()


@contextmanager
def sqlite_write_lock(server):
    """Another program writing: BEGIN IMMEDIATE on its own connection to the server's database file."""
    connection = sqlite3.connect(server.env["DATABASE_URL"].removeprefix("sqlite:///"), isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


@contextmanager
def postgres_lock(server, statement):
    """Another program holding a lock in an open transaction, e.g. a long import."""
    import psycopg

    with psycopg.connect(server.env["DATABASE_URL"].replace("postgres://", "postgresql://")) as connection:
        connection.execute(statement)
        yield
        connection.rollback()


def last_used(server, token):
    status, _, text = call(server, "GET", "/api/items?limit=1", token=token)
    assert status == 200
    code = ("from linkblog import ApiToken\n"
            f"print(ApiToken.objects.get(token_hash=ApiToken.hash({token!r})).last_used_at)")
    return server.run("-m", "nanodjango", "manage", "linkblog.py", "shell", "-c", code).stdout.strip()


def test_a_token_read_while_another_program_writes_to_sqlite_answers(sqlite_server):
    token = fresh_token(sqlite_server)
    with sqlite_write_lock(sqlite_server):
        status, headers, text = call(sqlite_server, "GET", "/api/items", token=token)
        assert status == 200, text[:500]
        assert json.loads(text)["count"] >= 0
        status, _, text = call(sqlite_server, "GET", "/api/tags", token=token)
        assert status == 200, text[:500]
    # The lock gone, the next use records itself as before.
    assert last_used(sqlite_server, token) != "None"


def test_a_write_that_cannot_get_the_sqlite_lock_is_a_json_503_with_retry_after(sqlite_server):
    call(sqlite_server, "GET", "/api/items")  # the token's use is recorded: the write below is the only one
    with sqlite_write_lock(sqlite_server):
        status, headers, text = call(sqlite_server, "POST", "/api/entries", ENTRY)
    assert_json_problem(status, headers, text, 503)
    assert int(headers["Retry-After"]) > 0
    assert "try again" in json.loads(text)["detail"]
    # Nothing was half-written, and the same write goes through once the lock is free.
    assert "Written while busy" not in call(sqlite_server, "GET", "/api/entries")[2]
    status, _, text = call(sqlite_server, "POST", "/api/entries", ENTRY)
    assert status == 201, text[:500]


def test_lists_whose_cards_are_not_stored_yet_answer_while_another_program_writes_to_sqlite(sqlite_server):
    """A list renders the cards it lacks and stores them (blogworks/cards.py): a bookkeeping write that
    gives up when another writer holds the lock, even when it cannot begin, and stores them later.
    (The API and a feed: this server has no collected static files for HTML pages.)"""
    entry = {**ENTRY, "title": "Listed while busy", "tags": ["busy-cards"]}
    status, _, text = call(sqlite_server, "POST", "/api/entries", entry)
    assert status == 201, text[:500]
    with sqlite_write_lock(sqlite_server):
        for path in ("/api/items?tag=busy-cards", "/atom/everything/"):
            status, _, text = call(sqlite_server, "GET", path)
            assert status == 200, (path, text[:500])
            assert "Listed while busy" in text
    status, _, text = call(sqlite_server, "GET", "/api/items?tag=busy-cards")
    assert status == 200 and "Listed while busy" in text


def test_a_body_over_the_size_limit_is_a_json_413(sqlite_server):
    from django.conf import settings

    huge = {**ENTRY, "body": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}
    for method, path in (("POST", "/api/entries"), ("PATCH", "/api/tags/busy")):
        status, headers, text = call(sqlite_server, method, path, huge)
        assert_json_problem(status, headers, text, 413)
        assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in json.loads(text)["detail"]


def test_a_token_read_while_another_transaction_locks_the_token_on_postgresql_answers(postgres_server):
    token = fresh_token(postgres_server)
    with postgres_lock(postgres_server, "SELECT * FROM linkblog_apitoken FOR UPDATE"):
        status, _, text = call(postgres_server, "GET", "/api/items", token=token, timeout=20)
    assert status == 200, text[:500]
    assert last_used(postgres_server, token) != "None"


def test_a_write_that_waits_too_long_for_a_postgresql_lock_is_a_json_503(postgres_server):
    call(postgres_server, "GET", "/api/items")
    with postgres_lock(postgres_server, "LOCK TABLE linkblog_entry IN EXCLUSIVE MODE"):
        status, headers, text = call(postgres_server, "POST", "/api/entries", ENTRY, timeout=20)
    assert_json_problem(status, headers, text, 503)
    assert int(headers["Retry-After"]) > 0
    status, _, text = call(postgres_server, "POST", "/api/entries", ENTRY)
    assert status == 201, text[:500]


@contextmanager
def another_writer(database):
    """Another program holding the write lock of the test database (SQLite's, or on PostgreSQL an
    exclusive lock on the blogmarks table), as a long import would."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        other = sqlite3.connect(database["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        other = psycopg.connect(dbname=database["NAME"], user=database["USER"], password=database["PASSWORD"],
                                host=database["HOST"], port=database["PORT"])
        other.execute("LOCK TABLE linkblog_blogmark IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        other.rollback()  # sqlite3 too: its BEGIN IMMEDIATE opened a transaction
        other.close()


@pytest.mark.django_db(transaction=True)
def test_an_admin_save_that_cannot_get_the_lock_is_a_503_page_and_writes_nothing(admin_client, settings):
    """The author saves while an import holds the database's write lock: after the busy timeout the
    admin answers a 503 page that says to try again (the form is still in the browser), not a 500."""
    from linkblog import Blogmark

    form = {"link_url": "https://example.com/busy", "link_title": "Saved while busy", "slug": "", "commentary": "",
            "via_url": "", "via_title": "", "created_0": "2024-09-25", "created_1": "10:00:00"}
    with another_writer(settings.DATABASES["default"]):
        response = admin_client.post("/admin/linkblog/blogmark/add/", form)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "busy" in response.content.decode()
    assert not Blogmark.objects.exists()
    assert admin_client.post("/admin/linkblog/blogmark/add/", form).status_code == 302
