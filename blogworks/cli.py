"""The command line's plumbing: `python linkblog.py NAME ...` for the commands linkblog.py declares.

`@command` registers a function as a command; `main()` in linkblog.py runs it. Commands end with one
line on stderr and an exit status when something goes wrong, never a traceback. The argument parsers
of the commands (`token_arguments()`, `import_arguments()`, ...) are here too; `open_import_source`
opens a file or fetches a feed URL; `run_import`, `run_export` and `run_link_checks` do the work of
the commands of those names, handed what they need of linkblog.py.
"""

import argparse
import io
import os
import re
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.template.loader import render_to_string
from django.utils import timezone

from . import formats, linkstore
from .database import is_busy
from .importer import Progress, rendering_processes
from .linkcheck import LinkChecker
from .signals import posts_changed

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


def export_to_stdout(chunks):
    """Write as UTF-8 with \n line ends whatever the terminal's encoding, each chunk as it comes."""
    output = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=True)
    output.writelines(chunks)
    output.flush()


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
    print(f"linkblog {name}: {for_terminal(' '.join(message.split()))}", file=sys.stderr)
    return 1


# Control characters (and the ones that reorder text) a file may hold: printed as they are, they
# would move the cursor, recolour or retitle the terminal, or hide part of the message.
TERMINAL_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def for_terminal(text):
    """`text` with its control characters written as escapes (`\\x1b`), so a message stays one plain line."""
    return TERMINAL_CONTROLS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def run_import(options, import_posts, post_models):
    """`import`: one transaction; a summary on stdout, problems on stderr. `import_posts(stream,
    format, **options)`: an ImportReport."""
    is_url = formats.is_web_url(options.file)
    try:
        with terminate_as_interrupt(), open_import_source(options.file) as stream, \
                rendering_processes(options.processes, post_models) as render_map:
            size = os.fstat(stream.fileno()).st_size if hasattr(stream, "fileno") and not is_url else 0
            report = import_posts(stream, options.format or ("feed" if is_url else None), skip_bad=options.skip_bad,
                                  dry_run=options.dry_run, folders_as_tags=options.folders_as_tags,
                                  progress=Progress(sys.stderr, size), render_map=render_map)
    except (formats.ImportFailed, OSError, DatabaseError) as error:
        return command_error("import", error)
    except BrokenProcessPool:
        return command_error("import", "a rendering process died (out of memory?), nothing was written")
    except KeyboardInterrupt:
        return command_error("import", "interrupted, nothing was written")
    report.problems = [(where, for_terminal(message)) for where, message in report.problems]
    report.skipped = [(where, for_terminal(message)) for where, message in report.skipped]
    context = {"report": report, "source": options.file}
    print(render_to_string("import_problems.txt", context), end="", file=sys.stderr)
    if report.failed:
        return 1
    print(render_to_string("import_summary.txt", context), end="")
    return 0


def run_export(options, export):
    """`export`: `export(format, include_drafts)`'s chunks to a file or stdout."""
    try:
        if options.file:
            export_to_file(options.file, export(options.format, not options.no_drafts))
        else:
            export_to_stdout(export(options.format, not options.no_drafts))
    except BrokenPipeError:
        # The reader stopped early (`export | head`): not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, DatabaseError) as error:
        return command_error("export", error)
    except KeyboardInterrupt:
        return command_error("export", "interrupted")
    return 0


def run_link_checks(options, refresh_post_links, link_models):
    """`check-links`: check every distinct URL once, politely, storing each result as it comes, then
    classify every link. `link_models`: (Link, LinkCheck, LinkCheckRun)."""
    clock = (lambda: options.now) if options.now else timezone.now
    checker = LinkChecker(settings.LINKBLOG_LINKCHECK_USER_AGENT, timeout=options.timeout, per_host=options.per_host,
                          host_delay=options.delay, clock=clock)
    rules = {"min_failures": settings.LINKBLOG_LINK_DEAD_AFTER_FAILURES,
             "min_span": timedelta(days=settings.LINKBLOG_LINK_DEAD_AFTER_DAYS)}
    progress = Progress(sys.stderr, label="checking links")
    try:
        refresh_post_links()
        resumed, states = linkstore.check_all_links(checker, link_models, progress.done, **rules)
    except DatabaseError as error:
        return command_error("check-links", error)
    except KeyboardInterrupt:
        return command_error("check-links", "interrupted: run it again to carry on where it stopped")
    finally:
        progress.finish()
    link_model = link_models[0]
    posts_changed.send(sender=link_model)
    summary = ", ".join(f"{states[state]} {state}" for state, _ in link_model.STATES)
    print(f"{'Resumed and checked' if resumed else 'Checked'} {sum(states.values())} links: {summary}.")
    return 0


# What each command takes (linkblog.py declares the commands).


def token_arguments():
    parser = argparse.ArgumentParser(prog="linkblog.py token", description="Create an API token for a user.")
    parser.add_argument("username")
    parser.add_argument("--name", default="", help="what the token is for, e.g. phone")
    return parser


def import_arguments():
    parser = argparse.ArgumentParser(prog="python linkblog.py import", description="Import posts and tags from a file or feed URL.")
    parser.add_argument("file", metavar="FILE", help="an NDJSON, bookmarks HTML, Pinboard JSON or feed file, or a feed URL")
    parser.add_argument("--format", choices=formats.IMPORT_FORMATS, help="the file's format (detected from its content when not given)")
    parser.add_argument("--skip-bad", action="store_true", help="import the good records and list the bad ones")
    parser.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    parser.add_argument("--folders-as-tags", action="store_true", help="bookmark folder names become tags (netscape)")
    parser.add_argument("--processes", type=positive_int, default=default_render_processes(), metavar="N",
                        help="processes that render Markdown (default: one per core, at most 4; "
                             "1 keeps a busy server's other cores free)")
    return parser


def open_import_source(name):
    """A binary file object for a path or, for an http(s) address, the fetched feed."""
    if formats.is_web_url(name):
        return formats.open_feed_url(name)
    return open(name, "rb")


def export_arguments():
    parser = argparse.ArgumentParser(prog="python linkblog.py export", description="Export the blog.")
    parser.add_argument("file", metavar="FILE", nargs="?", help="where to write (standard output when not given)")
    parser.add_argument("--format", choices=formats.EXPORT_FORMATS, default="ndjson")
    parser.add_argument("--no-drafts", action="store_true", help="only what readers see now: drafts and scheduled posts left out")
    return parser


def check_links_arguments():
    parser = argparse.ArgumentParser(prog="python linkblog.py check-links",
                                     description="Check every link the posts hold, once each, and decide which are dead.")
    parser.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS", help="per request (default 10)")
    parser.add_argument("--per-host", type=positive_int, default=2, metavar="N",
                        help="requests at once to one host (default 2)")
    parser.add_argument("--delay", type=seconds, default=1.0, metavar="SECONDS",
                        help="between two requests to one host (default 1)")
    # Tests replay runs days apart: the checks really happen, stamped and judged as of this moment.
    parser.add_argument("--now", type=aware_datetime, help=argparse.SUPPRESS)
    return parser


def gunicorn_arguments(chdir, bind, workers, extra):
    """The command line `serve-production` becomes: gunicorn serving linkblog's handler, built once per worker."""
    return [
        sys.executable, "-m", "gunicorn",
        "--chdir", str(chdir),
        "--bind", bind,
        "--workers", str(workers),
        "--access-logfile", "-",
        "--error-logfile", "-",  # stderr, as Django's errors (config.logging_settings)
        "--no-control-socket",  # several servers may share a machine (and a service user has no home)
        *extra,
        "linkblog:wsgi_application()",
    ]
