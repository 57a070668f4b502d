"""Archived copies (issue 16): publishing a post asks the web archive to save its links, through the real
worker (`python linkblog.py worker --batch`) on a fresh database, against a local stand-in archive whose
URL is the LINKBLOG_ARCHIVE_URL setting. Nothing leaves 127.0.0.1."""

import json

from api_server import fresh_database_url
from production_server import manage, production_environment
from test_jobs import make_due, shell, worker

import conftest
from link_servers import Archive

LONG = "https://example.com/a page/" + "x" * 320 + "?q=1&r=2"
VIA = "https://via.example/post"
IN_TEXT = "https://text.example/in the text"


def blog(web_archive):
    """A fresh database whose site asks the stand-in archive."""
    env = production_environment(fresh_database_url(conftest.POSTGRES), LINKBLOG_ARCHIVE_URL=web_archive.url)
    assert manage(env, "migrate", "--noinput").returncode == 0
    return env


def save_posts(env):
    """A published blogmark, a draft and one dated next year, saved as the admin and the API save them."""
    shell(env, f"""
from datetime import timedelta
from django.apps import apps
from django.utils import timezone
Blogmark = apps.get_model("linkblog", "Blogmark")
Blogmark(link_url={LONG!r}, link_title="Published", via_url={VIA!r}, commentary="See [this](<{IN_TEXT}>).").save()
Blogmark(link_url="https://draft.example/", link_title="Draft", is_draft=True).save()
Blogmark(link_url="https://later.example/", link_title="Later", created=timezone.now() + timedelta(days=365)).save()
""")


def archived_urls(env):
    code = 'import json\nfrom django.apps import apps\nLink = apps.get_model("linkblog", "Link")\n' \
           'print(json.dumps(dict(Link.objects.values_list("url", "archived_url"))))'
    return json.loads(shell(env, code).strip().splitlines()[-1])


def waiting_jobs(env):
    """Archive jobs waiting for a later moment (other features, the fediverse's, queue their own)."""
    code = "from django.utils import timezone\nfrom django_tasks_db.models import DBTaskResult\n" \
           "print(DBTaskResult.objects.filter(status='READY', run_after__gt=timezone.now(),\n" \
           "      task_path='blogworks.linktasks.archive_post_links').count())"
    return int(shell(env, code).strip().splitlines()[-1])


def test_publishing_a_post_has_the_worker_ask_the_archive_to_save_its_links(web_archive):
    env = blog(web_archive)
    save_posts(env)
    assert web_archive.saved == []  # nothing during the save: it waits for the worker
    worker(env)
    assert sorted(web_archive.saved) == sorted([LONG, VIA, IN_TEXT])  # never the draft's or the future post's
    stored = archived_urls(env)
    assert stored[LONG].startswith(f"{web_archive.url}/web/{Archive.TIMESTAMP}/https://example.com/a%20page/xxx")
    assert stored[VIA] == f"{web_archive.url}/web/{Archive.TIMESTAMP}/{VIA}"
    assert stored["https://draft.example/"] == stored["https://later.example/"] == ""
    assert waiting_jobs(env) == 1  # the future post's, due on its date
    worker(env)
    assert len(web_archive.saved) == 3  # links already archived are not asked again


def test_an_archive_that_refuses_never_fails_the_save_and_is_asked_again_later(web_archive):
    web_archive.mode = "rate-limited"
    env = blog(web_archive)
    save_posts(env)  # saved: the archive is not asked during the save
    worker(env)
    assert sorted(web_archive.saved) == sorted([LONG, VIA, IN_TEXT])
    assert archived_urls(env)[VIA] == ""
    assert waiting_jobs(env) == 2  # the retry, and the future post's
    web_archive.mode = "content-location"
    make_due(env)
    worker(env)
    assert archived_urls(env)[VIA] == f"{web_archive.url}/web/{Archive.TIMESTAMP}/{VIA}"
