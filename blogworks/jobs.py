"""Background jobs: slow work (link checks, archive requests, deliveries to other servers) runs in a
worker process, never inside the request that saves a post, and is tried again when it fails.

Built on django-tasks, the backport of Django 6's tasks framework, with its database backend
(django-tasks-db): the queue is a table in the site's own database, so one server needs no broker and a
second server shares the queue through PostgreSQL. A task is a module-level function decorated with
`django_tasks.task`; its arguments are JSON (ids and URLs, never model instances). django-tasks does not
retry a failed task by itself: a task that should be retried calls `retry_later`.

The worker: `python linkblog.py worker` (README: Background jobs).
"""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(days=1)  # the longest wait between two tries
MAX_ATTEMPTS = 16  # 1 min, 2, 4 ... then a day apart: about five days of tries before giving up


def enqueue_on_commit(task, *args, **kwargs):
    """Enqueue `task` once the current transaction commits (at once outside one): a save that is rolled
    back starts no job, and a job never runs before the rows it reads are visible to the worker."""
    transaction.on_commit(lambda: task.enqueue(*args, **kwargs))


def retry_delay(attempt):
    """How long to wait before try number `attempt + 1` (attempts count from 0), or None: give up."""
    if attempt + 1 >= MAX_ATTEMPTS:
        return None
    return min(FIRST_RETRY * 2**attempt, LAST_RETRY)


def retry_later(task, attempt, *args, **kwargs):
    """Enqueue `task(*args, attempt=attempt + 1, **kwargs)` after `retry_delay(attempt)`; False when the
    task has been tried often enough and should give up."""
    delay = retry_delay(attempt)
    if delay is None:
        return False
    task.using(run_after=timezone.now() + delay).enqueue(*args, attempt=attempt + 1, **kwargs)
    return True
