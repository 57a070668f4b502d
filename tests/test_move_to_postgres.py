"""Moving a blog from SQLite to PostgreSQL with README's commands keeps every post, tag and user."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from postgres_server import PostgresServer
from api_server import fresh_database_url
from production_server import ROOT, manage, production_environment

import conftest

SEED = """
import random
from datetime import datetime, timedelta, timezone
from django.contrib.auth.models import User
random.seed(6)
tags = [linkblog.Tag.objects.create(tag=f"tag-{n}", description=f"About *{n}*") for n in range(8)]
start = datetime(2020, 1, 1, tzinfo=timezone.utc)
for n in range(40):
    when = start + timedelta(hours=37 * n)
    posts = [
        linkblog.Entry.objects.create(title=f"Entry {n} ✓", body=f"Body {n}\\n\\nMore *text* 🐍", created=when, is_draft=n % 7 == 0),
        linkblog.Blogmark.objects.create(link_url=f"https://example.com/{n}", link_title=f"Link {n}", commentary=f"Note {n}", via_url="https://via.example/", via_title="Via", created=when),
        linkblog.Quotation.objects.create(quotation=f"Quote {n}", source=f"Source {n}", created=when),
    ]
    for post in posts:
        post.tags.set(random.sample(tags, 2))
User.objects.create_superuser("author", "author@example.com", "moving-day-1")
"""

SNAPSHOT = """
import json
from django.contrib.auth import authenticate
snapshot = {}
for kind, model in linkblog.POST_MODELS.items():
    snapshot[kind] = sorted(
        [{**{f.attname: str(getattr(post, f.attname)) for f in model._meta.concrete_fields},
          "tags": sorted(tag.tag for tag in post.tags.all()), "url": post.get_absolute_url()}
         for post in model.objects.all()],
        key=lambda row: int(row["id"]),
    )
snapshot["tags"] = sorted([tag.tag, tag.description_html] for tag in linkblog.Tag.objects.all())
# What readers see comes from the listing store, rebuilt by the load: every listing and count.
snapshot["listed"] = [[row["kind"], row["pk"]] for row in linkblog.published_listing()]
snapshot["tag counts"] = sorted([tag.tag, tag.post_count] for tag in linkblog.readable_tags())
snapshot["author can log in"] = authenticate(username="author", password="moving-day-1") is not None
print("SNAPSHOT" + json.dumps(snapshot))
"""

# After the move, new writes must not collide with the loaded primary keys (sequences reset).
WRITE_AFTER = """
entry = linkblog.Entry.objects.create(title="First post on PostgreSQL", body="Hello")
print("NEW", entry.pk)
"""


def python(env, code):
    result = subprocess.run([sys.executable, "-c", "import linkblog\n" + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def snapshot(env):
    return json.loads(python(env, SNAPSHOT).split("SNAPSHOT", 1)[1])


@pytest.fixture(scope="module")
def postgres():
    """The suite's PostgreSQL server with --postgres; otherwise one of our own: this test always moves to a real one."""
    if conftest.POSTGRES is not None:
        yield conftest.POSTGRES
        return
    server = PostgresServer().start()
    yield server
    server.stop()


def test_moving_from_sqlite_to_postgresql_keeps_every_post(postgres):
    directory = Path(tempfile.mkdtemp(prefix="linkblog-move-"))
    old = production_environment(f"sqlite:///{directory / 'db.sqlite3'}")
    assert manage(old, "migrate", "--noinput").returncode == 0
    python(old, SEED)
    before = snapshot(old)
    assert len(before["entry"]) == len(before["blogmark"]) == len(before["quotation"]) == 40

    # README, "Moving to PostgreSQL": dump with natural keys, migrate the new database, load.
    dump = directory / "linkblog.json"
    dumped = manage(old, "dumpdata", *DUMP_OPTIONS, "--output", str(dump))
    assert dumped.returncode == 0, dumped.stderr
    new = production_environment(fresh_database_url(postgres))
    assert manage(new, "migrate", "--noinput").returncode == 0
    loaded = manage(new, "loaddata", str(dump))
    assert loaded.returncode == 0, loaded.stderr
    assert "Installed" in loaded.stdout

    after = snapshot(new)
    assert after == before
    new_pk = int(python(new, WRITE_AFTER).split("NEW", 1)[1])
    assert new_pk > max(int(row["id"]) for row in before["entry"])


DUMP_OPTIONS = [
    "--natural-foreign", "--natural-primary",
    "--exclude", "contenttypes", "--exclude", "auth.permission", "--exclude", "sessions",
    # Derived from the posts, and rebuilt as they load (README says why).
    "--exclude", "linkblog.listed", "--exclude", "linkblog.listedtag", "--exclude", "linkblog.tally",
    "--exclude", "linkblog.pairtally", "--exclude", "linkblog.monthtally", "--exclude", "linkblog.postcard",
    "--indent", "1",
]
