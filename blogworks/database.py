"""The database when it is busy: telling a wait that ran out from a real failure, and small
bookkeeping writes that give up at once instead of waiting.

SQLite has one writer at a time: another writer waits for the lock up to its busy timeout (5 s,
config.py), then fails with "database is locked". PostgreSQL locks rows and tables: a statement
waits up to `lock_timeout` (5 s, config.py), then fails with SQLSTATE 55P03. Both are worth trying
again in a moment (the API answers 503 JSON with Retry-After, pages and the admin a 503 page:
BusyDatabaseMiddleware), not a server error.

Also here: what the few queries written by hand (because compiling the ORM's took longer than
running them) borrow from the ORM: a Q compiled for their WHERE (condition_sql), so rules such as
"published" stay written once, and the rows read as the ORM would (field_converters, from_row).
"""

from contextlib import contextmanager
from functools import lru_cache, partial

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import OperationalError, connection, connections, transaction
from django.shortcuts import render

RETRY_AFTER_SECONDS = 5  # what the API tells a caller to wait: about one busy timeout
LOCK_WAIT_MILLISECONDS = 5000  # how long a statement waits for another writer's lock
BUSY_SQLITE_MESSAGES = ("database is locked", "database table is locked")
# PostgreSQL: lock_timeout ran out, a deadlock was broken, a serializable transaction lost a race.
BUSY_POSTGRESQL_STATES = {"55P03", "40P01", "40001"}


def is_busy(error):
    """True when `error` means another writer held what this one needed: try again later."""
    if not isinstance(error, OperationalError):
        return False
    if getattr(error.__cause__, "sqlstate", None) in BUSY_POSTGRESQL_STATES:
        return True
    return any(message in str(error) for message in BUSY_SQLITE_MESSAGES)


@contextmanager
def without_waiting(milliseconds=100):
    """A short transaction whose writes give up after `milliseconds` (OperationalError, is_busy)
    when another writer holds the lock, instead of waiting the usual 5 s."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            # The busy timeout belongs to the connection, and BEGIN IMMEDIATE already waits on it.
            cursor.execute("PRAGMA busy_timeout")
            saved = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
            try:
                with transaction.atomic():
                    yield
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(saved)}")
        else:
            with transaction.atomic():
                cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                               [f"{int(milliseconds)}ms"])
                saved = cursor.fetchone()[0]
                yield
                # In an outer transaction the setting would outlive this block: put it back.
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [saved])


def unless_busy(write):
    """Run `write()`, a bookkeeping write, without_waiting(), and give it up, silently, when another
    writer holds the database: the next reader does it again. True if it was written. (A function,
    not a context manager: SQLite can refuse at BEGIN, before a `with` body would run, and a context
    manager cannot skip its body.)"""
    try:
        with without_waiting():
            write()
    except OperationalError as error:
        if not is_busy(error):
            raise
        return False
    return True


def condition_sql(model, condition, connection):
    """(sql, params): `condition`, a Q over `model`'s own fields, compiled by the ORM for a WHERE
    clause of our own SQL on `model`'s table (its columns named with the table's name)."""
    query = model._default_manager.filter(condition).query
    try:
        return query.get_compiler(connection=connection).compile(query.where)
    except EmptyResultSet:  # the condition can match nothing (kind__in=[])
        return "1 = 0", []
    except FullResultSet:  # nor narrow anything (an empty Q)
        return "1 = 1", []


@lru_cache(maxsize=None)
def field_converters(model, alias, fields):
    """{field: value -> value} turning what the database gives into what the ORM would (a date's
    text on SQLite into an aware datetime), as its compiler does with each column's converters."""
    connection = connections[alias]
    convert = {}
    for name in fields:
        column = model._meta.get_field(name).get_col(model._meta.db_table)
        steps = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        convert[name] = partial(apply_converters, steps, column, connection)
    return convert


def from_row(model, alias, fields, values):
    """A `model` instance of a row's `values` for its `fields` (attnames), converted as the ORM would
    convert them and made by the model's from_db(), as a queryset would make it."""
    convert = field_converters(model, alias, tuple(fields))
    return model.from_db(alias, fields, [convert[name](value) for name, value in zip(fields, values)])


def apply_converters(steps, column, connection, value):
    for step in steps:
        value = step(value, column, connection)
    return value


def postgresql_options(options):
    """OPTIONS for a PostgreSQL connection: a statement waits at most LOCK_WAIT_MILLISECONDS for a lock,
    as SQLite's busy timeout does, so that a long import makes a web write fail fast, not hang."""
    setting = f"-c lock_timeout={LOCK_WAIT_MILLISECONDS}"
    return {**options, "options": f"{options['options']} {setting}" if options.get("options") else setting}


class BusyDatabaseMiddleware:
    """A page or admin write that waited too long for another writer's lock is a 503 page with
    Retry-After, not a server error: its transaction was rolled back, so nothing was half-written, and
    the author's form is still in the browser to send again. (The API answers the same in JSON.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_busy(exception):
            return None
        message = ("The database is busy with another write; nothing was changed. "
                   f"Please go back and try again in {RETRY_AFTER_SECONDS} seconds.")
        response = render(request, "503.html", {"message": message}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
