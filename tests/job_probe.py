"""A task for tests/test_jobs.py, importable by module path as the worker imports every task."""

from django_tasks import task

from blogworks.jobs import retry_later


@task()
def note(path, text, failures=0, attempt=0):
    """Append "attempt:text" to the file at `path`; the first `failures` tries fail and ask to be retried."""
    with open(path, "a") as output:
        output.write(f"{attempt}:{text}\n")
    if attempt < failures and not retry_later(note, attempt, path, text, failures=failures):
        with open(path, "a") as output:
            output.write("gave up\n")
