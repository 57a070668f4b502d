"""`nanodjango convert` turns linkblog.py into a full Django project that serves the same site.

The test converts into a temporary directory, checks and migrates the project on a fresh database,
seeds the same posts into both, and compares what both answer, through Django's whole request stack
with production settings (DEBUG off, hashed static files, page cache on).
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from api_server import fresh_database_url
from production_server import ROOT, manage, production_environment

import conftest

PROJECT = "blogsite"

# Runs in both: `m` is the module holding the models (linkblog, or blogsite.linkblog.models).
SEED_AND_READ = """
import json
from datetime import datetime, timezone
from django.contrib.auth.models import User
from django.test import Client

def at(day):
    return datetime(2024, 3, day, 12, tzinfo=timezone.utc)

django = m.Tag.objects.create(tag="django", description="The *Django* framework.")
python = m.Tag.objects.create(tag="python")
entry = m.Entry.objects.create(title="Converting a project", body="First paragraph.\\n\\nSecond one.", created=at(1))
entry.tags.set([django, python])
m.Blogmark.objects.create(link_url="https://example.com/a", link_title="A link", commentary="*Nice*", created=at(2)).tags.set([django])
m.Quotation.objects.create(quotation="Words.", source="Someone", created=at(3)).tags.set([python])
m.Entry.objects.create(title="Secret draft", body="Hidden", is_draft=True, created=at(4))

https = {"HTTP_X_FORWARDED_PROTO": "https"}
reader = Client(**https)
paths = ["/", "/tags/", "/tags/django/", entry.get_absolute_url(), "/?page=2", "/tags/nope/", *EXTRA_PATHS]
answers = {path: [reader.get(path).status_code, reader.get(path).content.decode()] for path in paths}

# Writes reach cached pages at once (the signal connections survived conversion).
m.Entry.objects.create(title="Written after caching", body="New", created=at(5))
answers["after a write"] = [200, str("Written after caching" in reader.get("/").content.decode())]

author = User.objects.create_superuser("author", "", "pw-author-1")
admin = Client(**https)
admin.force_login(author)
for path in ["/admin/", "/admin/linkblog/entry/", "/admin/linkblog/blogmark/", "/admin/linkblog/quotation/",
             "/admin/linkblog/tag/", "/admin/linkblog/entry/add/"]:
    answers[path] = [admin.get(path).status_code, ""]
print("ANSWERS" + json.dumps(answers))
"""

# Feeds, archives, discovery pages, search and the API.
EXTRA_PATHS = [
    "/atom/everything/", "/atom/entries/", "/tags/django.atom", "/tags/django+python/",
    "/archive/", "/2024/", "/2024/Mar/", "/2024/Mar/1/", "/sitemap.xml", "/robots.txt",
    "/api/items", "/api/tags", "/api/entries", "/search/?q=converting", "/api/items?q=words",
]


def answers_from(output):
    return json.loads(output.split("ANSWERS", 1)[1])


def run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]} {result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def converted():
    target = Path(tempfile.mkdtemp(prefix="linkblog-convert-")) / "project"
    env = production_environment("sqlite:///" + str(target.parent / "unused.sqlite3"))
    env["PATH"] = str(Path(sys.executable).parent) + ":" + env["PATH"]  # django-admin, beside this python
    output = run([sys.executable, "-m", "nanodjango", "convert", "linkblog.py", str(target), f"--name={PROJECT}"], ROOT, env)
    yield target, output
    shutil.rmtree(target.parent, ignore_errors=True)


def test_convert_leaves_nothing_behind_for_manual_merging(converted):
    target, output = converted
    app = target / PROJECT / "linkblog"
    assert not (app / "unused.py").exists(), (app / "unused.py").read_text()
    assert "Unused code" not in output
    for module in ("models", "views", "urls", "admin", "templatetags/linkblog"):
        assert (app / f"{module}.py").exists(), module
    assert "class EntryAdmin" in (app / "admin.py").read_text()
    assert "connect_signals()" in (app / "models.py").read_text()
    # The machinery comes along as the package it is, not pasted into the app's modules.
    package = Path(__file__).resolve().parent.parent / "blogworks"
    for module in package.glob("*.py"):
        assert (target / "blogworks" / module.name).read_text() == module.read_text(), module.name
    app_code = "".join(path.read_text() for path in app.rglob("*.py"))
    assert "class AnonymousPageCacheMiddleware" not in app_code and "def tokenize_query" not in app_code
    assert "from blogworks.search import" in app_code


def test_the_converted_project_serves_the_same_site(converted):
    target, _ = converted
    extra = f"EXTRA_PATHS = {EXTRA_PATHS!r}\n"

    single_env = production_environment(fresh_database_url(conftest.POSTGRES), DJANGO_ALLOWED_HOSTS="testserver")
    assert manage(single_env, "migrate", "--noinput").returncode == 0
    assert manage(single_env, "collectstatic", "--noinput").returncode == 0
    single = run([sys.executable, "-c", "import linkblog as m\nm.app._prepare()\n" + extra + SEED_AND_READ], ROOT, single_env)

    project_env = production_environment(fresh_database_url(conftest.POSTGRES), DJANGO_ALLOWED_HOSTS="testserver")
    manage_py = [sys.executable, "manage.py"]
    assert "no issues" in run([*manage_py, "check", "--deploy", "--fail-level", "WARNING"], target, project_env)
    run([*manage_py, "migrate", "--noinput"], target, project_env)
    run([*manage_py, "makemigrations", "--check", "--dry-run"], target, project_env)
    run([*manage_py, "collectstatic", "--noinput"], target, project_env)
    code = f"from {PROJECT}.linkblog import models as m\n" + extra + SEED_AND_READ
    converted_output = run([*manage_py, "shell", "-c", code], target, project_env)

    expected, actual = answers_from(single), answers_from(converted_output)
    assert expected["/"][0] == 200 and "Converting a project" in expected["/"][1] and "/static/linkblog." in expected["/"][1]
    assert "Secret draft" not in expected["/"][1]
    assert expected["after a write"] == [200, "True"]
    assert expected["/atom/everything/"][0] == 200 and "Converting a project" in expected["/atom/everything/"][1]
    assert "/converting-a-project/" in expected["/search/?q=converting"][1] and "Words." in expected["/api/items?q=words"][1]
    assert list(actual) == list(expected)
    for path in expected:
        assert actual[path] == expected[path], path
