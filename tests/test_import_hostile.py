"""Bad values in an import file never hang or crash: one clear line naming the record, `--skip-bad`
skips it. Through the command line (real processes), the admin's upload and, where it applies, the API."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from linkblog import ApiToken, Blogmark, Entry

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"type": "entry", "title": "Good", "body": "b", "created": "2024-05-01T12:00:00Z"}


def bookmarks(add_date):
    return (
        "<!DOCTYPE NETSCAPE-Bookmark-file-1>\n<DL><p>\n"
        '<DT><A HREF="https://example.com/good" ADD_DATE="1700000000">Good</A>\n'
        f'<DT><A HREF="https://example.com/bad" ADD_DATE="{add_date}">Bad</A>\n'
        "</DL>\n"
    ).encode()


def ndjson(*records):
    return "".join(json.dumps(record) + "\n" for record in records).encode()


# Each: (file name, file content, the line that is bad, what the message says)
HOSTILE_FILES = [
    ("inf.html", bookmarks("inf"), "line 4", "has an ADD_DATE that is not a date: “inf”"),
    ("minus-inf.html", bookmarks("-inf"), "line 4", "has an ADD_DATE that is not a date: “-inf”"),
    ("nan.html", bookmarks("nan"), "line 4", "has an ADD_DATE that is not a date: “nan”"),
    ("huge.html", bookmarks("1e400"), "line 4", "has an ADD_DATE that is not a date: “1e400”"),
    ("surrogate-title.ndjson", ndjson(GOOD, {**GOOD, "title": "bad \ud800"}), "line 2",
     "has a lone surrogate (\\ud800) in its text, which is not Unicode"),
    ("surrogate-tag.ndjson", ndjson(GOOD, {**GOOD, "title": "Other", "tags": ["\udfff"]}), "line 2",
     "has a lone surrogate (\\udfff) in its text, which is not Unicode"),
    ("surrogate-key.ndjson", ndjson(GOOD, {**GOOD, "title": "Other", "\ud83d": 1}), "line 2",
     "has a lone surrogate (\\ud83d) in its text, which is not Unicode"),
    ("surrogate-slug.ndjson", ndjson(GOOD, {**GOOD, "title": "Other", "slug": "a\ud800"}), "line 2",
     "has a lone surrogate (\\ud800) in its text, which is not Unicode"),
    ("surrogate.json", json.dumps([{"href": "https://example.com/good", "description": "Good"},
                                   {"href": "https://example.com/bad", "description": "Bad \udc00"}]).encode(),
     "item 2", "has a lone surrogate (\\udc00) in its text, which is not Unicode"),
    ("nul-title.ndjson", ndjson(GOOD, {**GOOD, "title": "nul \x00 here"}), "line 2",
     "has a bad title: contains a NUL character (\\x00)."),
    ("nul-body.ndjson", ndjson(GOOD, {**GOOD, "title": "Other", "body": "\x00"}), "line 2",
     "has a bad body: contains a NUL character (\\x00)."),
]
IDS = [name for name, *_ in HOSTILE_FILES]


def run_import(database, path, *options):
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONIOENCODING": "utf-8"}
    # The time limit only stops a hang from stalling the suite: an import of two records takes a second.
    return subprocess.run([sys.executable, "linkblog.py", "import", str(path), *options], cwd=ROOT, env=environment,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("name, content, where, message", HOSTILE_FILES, ids=IDS)
def test_the_command_line_names_the_bad_line_and_skip_bad_skips_it(migrated, tmp_path, name, content, where, message):
    database = tmp_path / "blog.sqlite3"
    shutil.copy(migrated, database)
    path = tmp_path / name
    path.write_bytes(content)
    refused = run_import(database, path)
    assert refused.returncode == 1
    assert refused.stderr.decode().splitlines() == [
        f"linkblog import: {where}: {message}",
        f"linkblog import: 1 bad record in {path}, nothing was written (fix it or use --skip-bad to import the rest)",
    ]
    skipped = run_import(database, path, "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stderr.decode().splitlines() == [f"linkblog import: skipped {where}: {message}"]


@pytest.mark.django_db
@pytest.mark.parametrize("name, content, where, message", HOSTILE_FILES, ids=IDS)
def test_the_admin_upload_names_the_bad_line_and_skip_bad_skips_it(admin_client, name, content, where, message):
    refused = admin_client.post("/admin/linkblog/import/", {"file": SimpleUploadedFile(name, content)})
    assert refused.status_code == 400
    assert f"{where}: {message}" in refused.content.decode()
    assert not Entry.objects.exists() and not Blogmark.objects.exists()
    skipped = admin_client.post("/admin/linkblog/import/", {"file": SimpleUploadedFile(name, content), "skip_bad": "on"})
    assert skipped.status_code == 200
    assert f"{where}: {message}" in skipped.content.decode()
    assert Entry.objects.count() + Blogmark.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ['"nul \\u0000 here"', '"bad \\ud800"', '"bad \\udfff\\ud800"'])
def test_the_api_refuses_the_same_text_with_a_422(client, admin_user, raw):
    token = ApiToken.issue(admin_user)
    body = f'{{"title": {raw}, "body": "b"}}'
    response = client.post("/api/entries", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["title"]
    assert not Entry.objects.exists()
