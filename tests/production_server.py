"""The production server as README starts it (`python linkblog.py serve-production`), for real-HTTP tests."""

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from postgres_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def production_environment(database_url, **extra):
    """What a deployment sets: DEBUG off, a real key, its database, its own cache directory."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LINKBLOG_", "DJANGO_"))}
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=database_url,
        LINKBLOG_CACHE_DIR=tempfile.mkdtemp(prefix="linkblog-server-cache-"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(env, *args):
    """`python linkblog.py manage ARGS` in that environment; its completed process."""
    return subprocess.run(
        [sys.executable, "linkblog.py", "manage", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


class ProductionServer:
    """`python linkblog.py serve-production 127.0.0.1:PORT` with WEB_CONCURRENCY workers; stop() ends it."""

    def __init__(self, env, workers=3):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "WEB_CONCURRENCY": str(workers)}
        self.log = Path(tempfile.mkdtemp(prefix="linkblog-server-log-")) / "server.log"
        self.process = None

    def start(self, seconds=60):
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "linkblog.py", "serve-production", f"127.0.0.1:{self.port}"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                Browser(self.base).request("/", timeout=5)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer: {self.output()}")

    def output(self):
        return self.log.read_text() if self.log.exists() else ""

    def worker_pids(self):
        """The gunicorn workers' pids (children of the master, which is the process we started)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Browser:
    """A tiny HTTP client that talks to the server as a browser behind the TLS proxy would.

    It keeps cookies itself: the standard library's jar never sends Secure cookies over http://.
    """

    def __init__(self, base):
        self.base = base
        self.cookies = {}

    def request(self, path, data=None, headers=None, timeout=30):
        headers = {"X-Forwarded-Proto": "https", **(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        if body is not None:
            origin = "https://" + urllib.parse.urlsplit(self.base).netloc  # as the proxy passes it on
            headers["Origin"] = origin  # Django's CSRF check compares it with the Host
            headers["Referer"] = origin + path
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            response = error
        self.remember_cookies(response)
        return response.status, dict(response.headers), response.read().decode("utf-8", "replace")

    def remember_cookies(self, response):
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]

    def csrf_token(self, html):
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    def log_in(self, username, password):
        status, _, html = self.request("/admin/login/?next=/admin/")
        status, headers, html = self.request(
            "/admin/login/?next=/admin/",
            {"csrfmiddlewaretoken": self.csrf_token(html), "username": username, "password": password, "next": "/admin/"},
        )
        assert status == 302, (status, html[:2000])
        return self


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None



def run_python(env, code):
    """Run Python code with linkblog imported, in that environment (e.g. to seed the database)."""
    result = subprocess.run(
        [sys.executable, "-c", "import linkblog\n" + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
