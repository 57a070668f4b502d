"""Start and stop a throwaway Redis server for the tests: Debian's redis-server in a temporary
directory, on 127.0.0.1 and a free port, keeping nothing on disk."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from postgres_server import free_port


class RedisServer:
    """`redis-server` listening on 127.0.0.1; `url` is what LINKBLOG_CACHE_URL takes."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="linkblog-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH: install Debian's redis-server (see .ci/run)")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.wait_until_ready()
        return self

    def wait_until_ready(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer; see {self.directory / 'log'}")

    def stop(self):
        try:
            if self.process and self.process.poll() is None:
                self.process.terminate()
                self.process.wait(timeout=30)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
