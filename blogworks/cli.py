"""The command line's plumbing: `python linkblog.py NAME ...` for the commands linkblog.py declares.

`@command` registers a function as a command; `main()` in linkblog.py runs it. Commands end with one
line on stderr and an exit status when something goes wrong, never a traceback.
"""

import argparse
import os
import signal
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.db import DatabaseError

from .database import is_busy

COMMANDS = {}


def command(function):
    """Register `function(args)` as `python linkblog.py NAME ARGS...`, NAME being its name without `_command`."""
    COMMANDS[function.__name__.removesuffix("_command").replace("_", "-")] = function
    return function


def default_render_processes():
    """One per core this process may run on, at most 4: each holds ~75 MB, and past that most of the time is
    the one process that reads and writes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 4)


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def seconds(text):
    """A number of seconds: 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text!r}")
    return value


def aware_datetime(text):
    """An ISO 8601 date-time with its time zone, e.g. 2024-03-01T04:00:00+00:00."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a time zone, e.g. {text}+00:00")
    return value


def export_to_file(name, chunks):
    """Write beside the target and rename at the end, so a failed export never leaves half a file."""
    partial_file = Path(f"{name}.partial")
    try:
        with open(partial_file, "w", encoding="utf-8", newline="\n") as output:
            output.writelines(chunks)
        os.replace(partial_file, name)
    except OSError as error:
        raise OSError(error.errno, error.strerror, name)
    finally:
        partial_file.unlink(missing_ok=True)


@contextmanager
def terminate_as_interrupt():
    """SIGTERM (`kill PID`, systemd stopping a service) ends the command as Ctrl-C does: it raises
    KeyboardInterrupt, so the command rolls back and says so."""

    def interrupt(signal_number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def command_error(name, error):
    """One line on stderr and exit status 1: never a traceback."""
    if isinstance(error, OSError) and error.filename:
        message = f"{error.filename}: {error.strerror}"
    elif is_busy(error):
        message = ("the database is busy: another import is running (or another program is writing); "
                   "nothing was written, try again when it has finished")
    elif isinstance(error, DatabaseError):
        message = f"database error: {error} (is the database migrated? nanodjango manage linkblog.py migrate)"
    else:
        message = str(error)
    print(f"linkblog {name}: {' '.join(message.split())}", file=sys.stderr)
    return 1
