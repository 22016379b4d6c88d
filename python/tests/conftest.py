"""Fixtures: a real fathom-server for the HTTP client, and a `backend` that is either the
embedded Database or a Client of that server, so the same collection tests run against both."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

import fathom

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-" + uuid.uuid4().hex
READ_ONLY_KEY = "read-only-" + uuid.uuid4().hex


def server_binary() -> str:
    path = os.environ.get("FATHOM_SERVER_BIN") or str(ROOT / "build" / "src" / "server" / "fathom-server")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"fathom-server not found at {path}: build it or set FATHOM_SERVER_BIN")
    return path


class ServerProcess:
    """fathom-server on an ephemeral loopback port with a temporary data directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fathom-pytest-server-")
        env = dict(os.environ, FATHOM_API_KEY=API_KEY, FATHOM_READ_ONLY_API_KEY=READ_ONLY_KEY)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [server_binary(), "--data", os.path.join(self.dir, "data"), "--port", "0",
             "--durability", "buffered"],
            stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.url = None
        deadline = time.time() + 60
        assert self.proc.stdout is not None
        while self.url is None and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(rb"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1).decode()
        if self.url is None:
            self.stop()
            raise RuntimeError("fathom-server did not start: " + open(self.log.name).read()[-2000:])
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    s = ServerProcess()
    yield s
    s.stop()


@pytest.fixture
def database(tmp_path):
    db = fathom.Database(tmp_path / "db", durability="buffered")
    yield db
    db.close()


@pytest.fixture(params=["embedded", "server"])
def backend(request, tmp_path):
    """fathom.Database or fathom.Client: both have create/get/drop/list_collections."""
    if request.param == "embedded":
        db = fathom.Database(tmp_path / "db", durability="buffered")
        yield db
        db.close()
    else:
        client = fathom.Client(request.getfixturevalue("server").url, api_key=API_KEY)
        yield client
        for name in client.list_collections():
            client.drop_collection(name)
        client.close()


def unique_name() -> str:
    return "c" + uuid.uuid4().hex[:12]
