"""Service-folder fixtures shared by the contract and local-mode tests, and the one way the tests run a
model server process (`model_server`).

`environments` is the session's cache of per-service environments (`local.environments`): tests that
build environments share it, so each distinct environment is built once per session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ENTRY = "def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n"


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A minimal v1 service folder."""
    (tmp_path / "score.py").write_text(ENTRY)
    (tmp_path / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (tmp_path / "deploymentconfig.json").write_text(json.dumps({"computeType": "AKS", "numReplicas": 2, "scoringTimeoutMs": 3000}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\0")
    return tmp_path


@pytest.fixture(scope="session")
def environments(tmp_path_factory) -> Path:
    """Where this session's tests keep built service environments (shared: each is built once)."""
    return tmp_path_factory.mktemp("environments")


@contextlib.contextmanager
def model_server(argv: list[str], log_path: Path, port: int, env: dict[str, str] | None = None, timeout: float = 60) -> Iterator[subprocess.Popen]:
    """A model server process group, healthy on 127.0.0.1:`port`; stopped (SIGTERM, then SIGKILL) on exit.
    Fails the test with the server's log if it exits or is not healthy within `timeout` seconds."""
    log = open(log_path, "w+")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"server exited with {process.returncode}:\n{log.read()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy within {timeout:g} s")
            time.sleep(0.1)
        yield process
    finally:
        stop_server(process)
        log.close()


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (graceful), SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
