"""A real server for API tests over HTTP: a fresh migrated database, a superuser with an API token,
and gunicorn serving `linkblog:wsgi_application()` on 127.0.0.1 on a free port."""

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from postgres_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Show a redirect to the test instead of following it."""

    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirects)


def fresh_database_url(postgres):
    """A new empty database: a SQLite file, or a new database on the test PostgreSQL server."""
    if postgres is None:
        return "sqlite:///" + str(Path(tempfile.mkdtemp(prefix="linkblog-api-")) / "db.sqlite3")
    import psycopg

    name = f"linkblog_api_{uuid.uuid4().hex[:10]}"
    server = postgres.url.rsplit("/", 1)[0]
    with psycopg.connect(server + "/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


class ApiServer:
    """Start with start(), stop with stop(); `token` is a superuser's API token, `base` the server's URL."""

    def __init__(self, postgres=None, debug=False):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "LINKBLOG_"))},
            "DATABASE_URL": fresh_database_url(postgres),
            "DJANGO_DEBUG": "1" if debug else "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "LINKBLOG_BASE_URL": self.base,
            "LINKBLOG_FETCH_PRIVATE_ADDRESSES": "1",  # the fediverse's stand-ins listen on 127.0.0.1
        }
        self.log = Path(tempfile.mkdtemp(prefix="linkblog-api-log-")) / "gunicorn.log"
        self.process = None
        self.token = None

    def run(self, *args):
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=self.env, check=True,
                              capture_output=True, text=True, timeout=180)

    def start(self):
        self.run("-m", "nanodjango", "manage", "linkblog.py", "migrate", "--no-input")
        make_user = "from django.contrib.auth.models import User; User.objects.create_superuser('api', 'api@example.com', None)"
        self.run("-m", "nanodjango", "manage", "linkblog.py", "shell", "-c", make_user)
        self.token = self.run("linkblog.py", "token", "api", "--name", "tests").stdout.strip()
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "linkblog:wsgi_application()", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", "2", "--timeout", "60",
                 # gunicorn itself answers a request line over 4 KB with an HTML 414 before the app
                 # sees it; the fuzzer's long query strings are meant for the app, so lift that limit.
                 "--limit-request-line", "0"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()}")
            try:
                urllib.request.urlopen(self.base + "/api/openapi.json", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer: {self.log.read_text()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def request(self, method, path, payload=None, token=True):
        """One HTTP request; returns (status, parsed JSON body or None, headers)."""
        return api_request(self.base, method, path, payload, self.token if token else None)


def api_request(base, method, path, payload=None, token=None, timeout=30):
    """One HTTP request to the API at `base`, with a token if given: (status, parsed JSON body or None, headers)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, parse(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, parse(error.read()), error.headers


def parse(body):
    return json.loads(body) if body else None
