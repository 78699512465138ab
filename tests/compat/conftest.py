"""Fixtures for the Credyt compatibility suite.

The suite starts the real `drawdown` binary (path in $DRAWDOWN_BIN, built by
scripts/test.sh) on a free local port with a throw-away data directory, and
drives it through the official `credyt-api` Python client, unchanged.

Fixtures:
- `server`: one server for the whole session. Tests share it, so every test
  uses unique codes / external ids (see `unique`).
- `fresh_server`: a server of its own for a test that needs an empty store;
  `server_factory` starts (and restarts, on the same data directory) more.
- `client`: a `credytapi.CredytApiClient` pointed at the shared server.
- `http`: a `requests.Session` for the few tests that check raw statuses.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests
from corehttp.credentials import ServiceKeyCredential
from credytapi import CredytApiClient

API_KEY = "sk_test_compat_0123456789abcdef"
STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 10.0


@dataclasses.dataclass
class Server:
    url: str
    key: str
    data_dir: pathlib.Path
    process: subprocess.Popen
    log_path: pathlib.Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _drawdown_bin() -> str:
    path = os.environ.get("DRAWDOWN_BIN")
    if not path:
        pytest.fail(
            "DRAWDOWN_BIN is not set; run the suite through scripts/test.sh "
            "or set it to the path of the built `drawdown` binary"
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"DRAWDOWN_BIN={path!r} is not an executable file")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(base_dir: pathlib.Path) -> Server:
    # The free port is picked before the server binds it, so another process may
    # take it in between: retry on a new port when that is why the server died.
    for attempt in range(3):
        try:
            return _start_server_once(base_dir)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _start_server_once(base_dir: pathlib.Path) -> Server:
    binary = _drawdown_bin()
    data_dir = base_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = base_dir / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"

    env = dict(os.environ)
    env["DRAWDOWN_API_KEY"] = API_KEY
    env["RUST_LOG"] = "warn"

    log_file = open(log_path, "ab")  # appended: a restarted server keeps the earlier output
    try:
        process = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    finally:
        log_file.close()  # the child holds its own descriptor

    server = Server(url=url, key=API_KEY, data_dir=data_dir, process=process, log_path=log_path)

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "no attempt made"
    while True:
        code = process.poll()
        if code is not None:
            if "in use" in server.log().lower():
                raise _PortTaken(server.log())
            pytest.fail(
                f"drawdown exited with status {code} before becoming healthy.\n"
                f"--- server output ---\n{server.log()}"
            )
        try:
            resp = requests.get(f"{url}/healthz", timeout=2)
            if resp.status_code == 200:
                return server
            last_error = f"GET /healthz -> {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as exc:
            last_error = repr(exc)
        if time.monotonic() > deadline:
            _stop_server(server)
            pytest.fail(
                f"drawdown did not answer 200 on /healthz within {STARTUP_TIMEOUT_S:.0f}s "
                f"(last: {last_error}).\n--- server output ---\n{server.log()}"
            )
        time.sleep(0.1)


def _stop_server(server: Server) -> None:
    process = server.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One drawdown server shared by the whole session."""
    srv = _start_server(tmp_path_factory.mktemp("drawdown-shared"))
    try:
        yield srv
    finally:
        _stop_server(srv)


class ServerFactory:
    """Starts servers for one test and stops every one of them at teardown."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._started: list[Server] = []

    def start(self) -> Server:
        srv = _start_server(self._tmp.mktemp("drawdown-fresh"))
        self._started.append(srv)
        return srv

    def restart(self, srv: Server) -> Server:
        """Stop `srv` (SIGTERM) and start a new server on the same data directory."""
        _stop_server(srv)
        new = _start_server(srv.data_dir.parent)
        self._started.append(new)
        return new

    def stop_all(self) -> None:
        for srv in self._started:
            _stop_server(srv)


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory):
    factory = ServerFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def fresh_server(server_factory: ServerFactory) -> Server:
    """A drawdown server of the test's own, on an empty data directory."""
    return server_factory.start()


def make_client(srv: Server) -> CredytApiClient:
    # retry_total=0: a failing server must show its first answer, not a retry.
    return CredytApiClient(ServiceKeyCredential(srv.key), endpoint=srv.url, retry_total=0)


@pytest.fixture
def client(server: Server):
    c = make_client(server)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def http(server: Server):
    """Raw HTTP, authenticated, for tests that check error statuses and bodies."""
    with requests.Session() as s:
        s.headers["X-CREDYT-API-KEY"] = server.key
        yield s


@pytest.fixture
def unique() -> str:
    """An uppercase alphanumeric suffix unique to this test (codes, external ids)."""
    return uuid.uuid4().hex[:10].upper()
