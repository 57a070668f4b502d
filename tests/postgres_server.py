"""Start and stop a throwaway PostgreSQL server for the tests: initdb and pg_ctl as the postgres user."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(args):
    """Run a command as the postgres user when we are root (initdb refuses to run as root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


class PostgresServer:
    """A PostgreSQL server in a temporary directory, listening on 127.0.0.1 on a free port."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="linkblog-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/linkblog"

    def start(self):
        if shutil.which("initdb") is None:
            raise RuntimeError("PostgreSQL's initdb is not on PATH: install postgresql (see .ci/run)")
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.directory, postgres.pw_uid, postgres.pw_gid)
        as_postgres(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off -c max_connections=200"
        as_postgres(["pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start"])
        self.wait_until_ready()
        as_postgres(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "linkblog"])
        return self

    def wait_until_ready(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start; see {self.directory / 'log'}")

    def stop(self):
        try:
            as_postgres(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
