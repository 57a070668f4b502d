"""`python linkblog.py import/export` as a person runs them: real processes on a real SQLite file."""

import os
import shutil
import signal
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def run(database, *args, stdin=None):
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "linkblog.py", *args], cwd=ROOT, env=environment, input=stdin,
                          capture_output=True, timeout=120)


@pytest.fixture
def database(migrated, tmp_path):
    copy = tmp_path / "blog.sqlite3"
    shutil.copy(migrated, copy)
    return copy


def lines(stream):
    return stream.decode().splitlines()


def assert_clean_failure(result, *expected):
    """Exit status 1, the given one-line messages on stderr, and never a traceback."""
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    for line in expected:
        assert line in lines(result.stderr)


def test_import_prints_a_summary_per_kind(database):
    result = run(database, "import", str(DATA / "blog.ndjson"))
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        f"Imported {DATA / 'blog.ndjson'}.",
        "kind         created   updated unchanged   skipped",
        "tag                4         0         0         0",
        "entry              3         0         0         0",
        "blogmark           2         0         0         0",
        "quotation          1         0         0         0",
    ]
    again = run(database, "import", str(DATA / "blog.ndjson"))
    assert lines(again.stdout)[3] == "entry              0         0         3         0"


def test_a_bad_file_is_refused_with_the_line_and_nothing_is_written(database):
    result = run(database, "import", str(DATA / "missing-field.ndjson"))
    assert_clean_failure(
        result,
        "linkblog import: line 2: has no link_title (required)",
        "linkblog import: line 3: has no source (required)",
        "linkblog import: line 4: has a bad link_url: “javascript:alert(document.cookie)” is not a web link (http:// or https://, then a host).",
        f"linkblog import: 3 bad records in {DATA / 'missing-field.ndjson'}, nothing was written "
        "(fix them or use --skip-bad to import the rest)",
    )
    assert result.stdout == b""
    assert run(database, "export").stdout == b""


def test_control_characters_from_a_file_reach_the_terminal_escaped(database, tmp_path):
    hostile = tmp_path / "hostile.ndjson"
    hostile.write_text('{"type": "entry", "slug": "x\\u001b[31mRED", "title": "t", "body": "b"}\n'
                       '{"type": "entry", "title": "t2", "body": "b", "created": "\\u001b]0;pwned\\u0007\\u202e"}\n')
    result = run(database, "import", str(hostile))
    assert_clean_failure(
        result,
        "linkblog import: line 1: has a slug with characters other than letters, digits, - and _: “x\\x1b[31mRED”",
        "linkblog import: line 2: has a created date that is not ISO 8601: “\\x1b]0;pwned\\x07\\u202e”",
    )
    assert b"\x1b" not in result.stderr and b"\x07" not in result.stderr


def test_skip_bad_imports_the_rest_and_lists_every_skipped_line(database):
    result = run(database, "import", "--skip-bad", str(DATA / "missing-field.ndjson"))
    assert result.returncode == 0
    assert lines(result.stderr) == [
        "linkblog import: skipped line 2: has no link_title (required)",
        "linkblog import: skipped line 3: has no source (required)",
        "linkblog import: skipped line 4: has a bad link_url: “javascript:alert(document.cookie)” is not a web link (http:// or https://, then a host).",
    ]
    assert "blogmark           1         0         0         2" in lines(result.stdout)
    assert run(database, "export").stdout.count(b"\n") == 2


def test_a_dry_run_reports_and_writes_nothing(database):
    result = run(database, "import", "--dry-run", str(DATA / "pinboard.json"))
    assert result.returncode == 0
    assert lines(result.stdout)[0] == f"Dry run of {DATA / 'pinboard.json'}: nothing was written."
    assert "blogmark           4         0         0         0" in lines(result.stdout)
    assert run(database, "export").stdout == b""


def test_export_import_export_through_the_command_line_is_byte_identical(database, migrated, tmp_path):
    for name in ("blog.ndjson", "dates.ndjson", "bookmarks-firefox.html", "pinboard.json", "feed-atom.xml"):
        assert run(database, "import", str(DATA / name)).returncode == 0
    first = run(database, "export")
    assert first.returncode == 0 and b'"is_draft": true' in first.stdout
    exported = tmp_path / "blog.ndjson"
    assert run(database, "export", str(exported)).returncode == 0
    assert exported.read_bytes() == first.stdout

    empty = tmp_path / "empty.sqlite3"
    shutil.copy(migrated, empty)
    assert run(empty, "import", str(exported)).returncode == 0
    assert run(empty, "export").stdout == first.stdout


def test_export_leaves_drafts_out_on_request_and_writes_bookmarks(database, tmp_path):
    run(database, "import", str(DATA / "blog.ndjson"))
    assert b"draft-notes" in run(database, "export").stdout
    assert b"draft-notes" not in run(database, "export", "--no-drafts").stdout
    bookmarks = run(database, "export", "--format", "netscape").stdout.decode()
    assert bookmarks.startswith("<!DOCTYPE NETSCAPE-Bookmark-file-1>")
    assert '<DT><A HREF="https://github.com/radiac/nanodjango" ADD_DATE="1727197800" PRIVATE="0" TAGS="django,python">nanodjango</A>' in bookmarks


@pytest.mark.parametrize("arguments, message", [
    (["import", "/no/such/file.ndjson"], "linkblog import: /no/such/file.ndjson: No such file or directory"),
    (["import", str(DATA / "bookmarks-latin1-undeclared.html")],
     "linkblog import: the bookmarks file is not valid utf-8 text (byte 0xe7 on line 5); save it as UTF-8 or declare its character set"),
    (["import", str(ROOT / "README.md")],
     "linkblog import: cannot tell the file's format: give --format ndjson, netscape, pinboard or feed"),
    (["export", "/no/such/dir/blog.ndjson"], "linkblog export: /no/such/dir/blog.ndjson: No such file or directory"),
])
def test_unusable_input_gets_one_line_and_exit_status_one(database, arguments, message):
    result = run(database, *arguments)
    assert_clean_failure(result)
    assert lines(result.stderr) == [message]


def test_an_unmigrated_database_is_explained(tmp_path):
    result = run(tmp_path / "new.sqlite3", "import", str(DATA / "blog.ndjson"))
    assert_clean_failure(result)
    assert lines(result.stderr) == ["linkblog import: database error: no such table: linkblog_tag "
                                    "(is the database migrated? nanodjango manage linkblog.py migrate)"]


def test_wrong_arguments_get_usage_and_exit_status_two(database):
    result = run(database, "import", "--format", "csv", str(DATA / "blog.ndjson"))
    assert result.returncode == 2
    assert "invalid choice: 'csv'" in result.stderr.decode() and "Traceback" not in result.stderr.decode()
    result = run(database, "import", "--processes", "0", str(DATA / "blog.ndjson"))
    assert result.returncode == 2
    assert "argument --processes: must be a whole number of at least 1, not '0'" in result.stderr.decode()


def test_a_feed_url_is_fetched_over_http(database):
    handler = partial(SimpleHTTPRequestHandler, directory=str(DATA))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/feed-atom.xml"
        result = run(database, "import", url)
        assert result.returncode == 0, result.stderr
        assert "blogmark           2         0         0         0" in lines(result.stdout)
        missing = run(database, "import", url.replace("feed-atom", "missing"))
        assert_clean_failure(missing)
        assert lines(missing.stderr) == [f"linkblog import: could not fetch {url.replace('feed-atom', 'missing')}: HTTP 404 File not found"]
    finally:
        server.shutdown()
        server.server_close()


def test_other_commands_still_reach_nanodjango(database):
    result = run(database, "manage", "check")
    assert result.returncode == 0
    assert b"System check identified no issues" in result.stdout


def test_a_terminal_gets_a_progress_bar_on_stderr(database):
    import pty

    controller, terminal = pty.openpty()
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    result = subprocess.run([sys.executable, "linkblog.py", "import", str(DATA / "blog.ndjson")], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=terminal, timeout=120)
    os.close(terminal)
    shown = os.read(controller, 65536).decode()
    os.close(controller)
    assert result.returncode == 0
    assert "importing [##############################] 100%" in shown
    assert b"importing" not in result.stdout  # the summary on stdout stays clean for scripts


def big_import_file(tmp_path, posts=20000):
    import json

    big = tmp_path / "big.ndjson"
    with open(big, "w") as output:
        for number in range(posts):
            output.write(json.dumps({"type": "entry", "slug": f"e-{number}", "title": f"Entry {number}",
                                     "body": "A *paragraph* of text.\n\n- one\n- two", "created": "2024-01-01T00:00:00Z"}) + "\n")
    return big


def start_import_on_a_terminal(database, path, *options):
    """`python linkblog.py import` with stderr on a pseudo-terminal, in its own process group, once under way."""
    import pty

    controller, terminal = pty.openpty()
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    # A shell without job control (CI's background run) starts its children with Ctrl-C ignored, and Python
    # then never raises KeyboardInterrupt: give the import the terminal's default, as a person's shell does.
    process = subprocess.Popen([sys.executable, "linkblog.py", "import", str(path), *options], cwd=ROOT, env=environment,
                               stdout=subprocess.PIPE, stderr=terminal, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    shown = b""
    while b"importing [" not in shown:  # wait until the import itself is under way
        shown += os.read(controller, 4096)
    return process, controller, terminal, shown


def read_to_the_end(controller):
    """All the terminal shows until every process writing to it (workers too) has closed it."""
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: nobody has the terminal open any more
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return shown


def rendering_processes_of(process, count=2):
    """The ids of the import's rendering processes (its children, from /proc), once all have started."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == process.pid:
                    children.append(int(entry.name))
            except OSError:
                continue
        if len(children) == count:
            return children
        time.sleep(0.05)
    raise AssertionError(f"the import did not start {count} rendering processes")


def assert_stopped_with_nothing_written(database, process, controller, terminal, shown, message):
    """The import exits with status 1 and `message` on the terminal, shows no traceback, and wrote nothing."""
    process.wait(timeout=60)
    os.close(terminal)
    shown = (shown + read_to_the_end(controller)).decode()
    assert process.returncode == 1
    assert message in shown
    assert "Traceback" not in shown
    assert run(database, "export").stdout == b""


def test_an_interrupted_import_writes_nothing_and_says_so(database, tmp_path):
    import signal

    process, controller, terminal, shown = start_import_on_a_terminal(database, big_import_file(tmp_path), "--processes", "2")
    rendering_processes_of(process)
    while b"importing [#" not in shown:  # and rendering is under way
        shown += os.read(controller, 4096)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals every process of the group
    assert_stopped_with_nothing_written(database, process, controller, terminal, shown,
                                        "linkblog import: interrupted, nothing was written")


def test_a_rendering_process_killed_mid_import_leaves_nothing_written(database, tmp_path):
    import signal

    process, controller, terminal, shown = start_import_on_a_terminal(database, big_import_file(tmp_path, 40000), "--processes", "2")
    os.kill(rendering_processes_of(process)[0], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert_stopped_with_nothing_written(database, process, controller, terminal, shown,
                                        "linkblog import: a rendering process died (out of memory?), nothing was written")


@pytest.mark.parametrize("whole_group", [False, True], ids=["kill PID", "systemd stopping the service"])
def test_a_terminated_import_writes_nothing_and_says_so(database, tmp_path, whole_group):
    import signal

    process, controller, terminal, shown = start_import_on_a_terminal(database, big_import_file(tmp_path), "--processes", "2")
    renderers = rendering_processes_of(process)
    while b"importing [#" not in shown:
        shown += os.read(controller, 4096)
    if whole_group:  # systemd sends SIGTERM to every process of the service, renderers too
        os.killpg(process.pid, signal.SIGTERM)
    else:
        os.kill(process.pid, signal.SIGTERM)
    process.wait(timeout=60)
    assert_gone(renderers)
    assert_stopped_with_nothing_written(database, process, controller, terminal, shown,
                                        "linkblog import: interrupted, nothing was written")


def running(pid):
    """True while the process exists and is not a zombie (reparented to init, it is reaped soon)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_gone(pids, seconds=15):
    """Every process of `pids` ends within `seconds` (a bound, not a speed: they should go at once).
    Those left are killed, so that a failing test leaves nothing behind (nor a terminal held open)."""
    import signal
    import time

    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "rendering processes outlived their import"


def test_a_killed_import_takes_its_rendering_processes_with_it(database, tmp_path):
    import signal

    process, controller, terminal, shown = start_import_on_a_terminal(database, big_import_file(tmp_path), "--processes", "2")
    renderers = rendering_processes_of(process)
    os.kill(process.pid, signal.SIGKILL)  # nothing runs in the import any more: no cleanup of its own
    process.wait(timeout=60)
    assert_gone(renderers)
    os.close(terminal)
    read_to_the_end(controller)
    assert run(database, "export").stdout == b""  # SQLite rolled the unfinished transaction back


def test_a_second_import_at_the_same_time_says_another_import_is_running(database, tmp_path):
    import signal

    process, controller, terminal, shown = start_import_on_a_terminal(database, big_import_file(tmp_path), "--processes", "1")
    os.kill(process.pid, signal.SIGSTOP)  # paused mid-import, its transaction open, however fast the machine
    try:
        second = run(database, "import", str(DATA / "blog.ndjson"))
    finally:
        os.kill(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGINT)
        assert_stopped_with_nothing_written(database, process, controller, terminal, shown,
                                            "linkblog import: interrupted, nothing was written")
    assert_clean_failure(second)
    assert lines(second.stderr) == ["linkblog import: the database is busy: another import is running (or another "
                                    "program is writing); nothing was written, try again when it has finished"]
    assert run(database, "import", str(DATA / "blog.ndjson")).returncode == 0


def test_export_into_a_closed_pipe_is_quiet(database, tmp_path):
    import json

    many = tmp_path / "many.ndjson"  # far more than a pipe holds, so the export meets the closed pipe
    many.write_text("".join(json.dumps({"type": "blogmark", "slug": f"b-{number}", "link_url": f"https://example.com/{number}",
                                        "link_title": f"Link {number} " + "x" * 200, "created": "2024-01-01T00:00:00Z"}) + "\n"
                            for number in range(3000)))
    assert run(database, "import", str(many)).returncode == 0
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
    result = subprocess.run(f"{sys.executable} linkblog.py export | head -c 10", shell=True, cwd=ROOT, env=environment,
                            capture_output=True, timeout=120)
    assert result.stdout == b'{"type": "'
    assert result.stderr == b""
