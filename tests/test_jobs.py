"""Background jobs (blogworks/jobs.py): enqueued after commit, run by `python linkblog.py worker`,
retried later when they ask to be. Everything runs as a deployment runs it: separate processes on a
fresh database, the worker started from the command line."""

import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from api_server import fresh_database_url
from production_server import ROOT, manage, production_environment

import conftest
from blogworks.jobs import MAX_ATTEMPTS, retry_delay

TESTS = Path(__file__).resolve().parent


def environment():
    env = production_environment(fresh_database_url(conftest.POSTGRES), PYTHONPATH=str(TESTS))
    assert manage(env, "migrate", "--noinput").returncode == 0
    return env


def shell(env, code):
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout


def worker(env):
    """`python linkblog.py worker --batch`: run every job that is due, then exit."""
    result = subprocess.run([sys.executable, "linkblog.py", "worker", "--batch"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def enqueue(env, path, *, rollback=False, failures=0):
    shell(env, f"""
from django.db import transaction
from blogworks.jobs import enqueue_on_commit
from job_probe import note
try:
    with transaction.atomic():
        enqueue_on_commit(note, {str(path)!r}, "hello", failures={failures})
        if {rollback}:
            raise RuntimeError("rolled back")
except RuntimeError:
    pass
""")


def make_due(env):
    """Move every waiting job's time to now, as if its retry delay had passed."""
    shell(env, "from django.utils import timezone\nfrom django_tasks_db.models import DBTaskResult\n"
               "DBTaskResult.objects.filter(status='READY').update(run_after=timezone.now())")


def test_a_job_enqueued_in_a_committed_transaction_runs_in_the_worker_and_a_rolled_back_one_never():
    env, path = environment(), Path(tempfile.mkdtemp()) / "notes.txt"
    enqueue(env, path, rollback=True)
    worker(env)
    assert not path.exists()
    enqueue(env, path)
    assert not path.exists()  # not in the process that enqueued it
    worker(env)
    assert path.read_text() == "0:hello\n"
    worker(env)
    assert path.read_text() == "0:hello\n"  # done once


def test_a_failed_job_is_tried_again_after_its_delay_not_before():
    env, path = environment(), Path(tempfile.mkdtemp()) / "notes.txt"
    enqueue(env, path, failures=2)
    worker(env)
    assert path.read_text() == "0:hello\n"
    worker(env)
    assert path.read_text() == "0:hello\n"  # the retry waits its delay
    make_due(env)
    worker(env)
    assert path.read_text() == "0:hello\n1:hello\n"
    make_due(env)
    worker(env)
    assert path.read_text() == "0:hello\n1:hello\n2:hello\n"


def test_retries_wait_longer_each_time_and_give_up_after_about_five_days():
    delays = [retry_delay(attempt) for attempt in range(MAX_ATTEMPTS)]
    assert delays[0] == timedelta(minutes=1) and delays[1] == timedelta(minutes=2)
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:-1]))
    assert max(delay for delay in delays if delay) == timedelta(days=1)
    assert delays[-1] is None
    assert timedelta(days=4) < sum((delay for delay in delays if delay), timedelta()) < timedelta(days=10)
