"""Azurite, the Blob Storage emulator, on 127.0.0.1: for local mode, the tests and the benchmarks.

`make` installs it from the npm registry into tools/azurite (pinned by its package-lock.json).
Data lives in `location`, so a stopped emulator restarted on the same folder and port keeps its
blobs: what the tests use to take the upload endpoint away for a while.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from aksinf_runtime.sinks import EMULATOR_ACCOUNT, EMULATOR_CREDENTIAL
from local.net import LOOPBACK, free_port

AZURITE = Path(__file__).resolve().parent.parent / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
PORT_ATTEMPTS = 3


class PortTaken(OSError):
    """Azurite could not listen: its port was in use."""


class BlobEmulator:
    def __init__(self, location: Path, port: int | None = None):
        self.location = location
        self.port = port or free_port()
        self.port_chosen = port is None  # ours to change if another process takes it before Azurite binds
        self.process: subprocess.Popen | None = None

    @property
    def account_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/{EMULATOR_ACCOUNT}"

    def container_url(self, container: str) -> str:
        return f"{self.account_url}/{container}"

    def start(self, timeout: float = 30.0) -> BlobEmulator:
        """Started and answering. A free port we chose can be taken by another process before Azurite binds
        it: then another port is tried (three in all); a port the caller gave is never changed."""
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return self._start(timeout)
            except PortTaken:
                if not self.port_chosen:
                    raise
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> BlobEmulator:
        if not AZURITE.exists():
            raise FileNotFoundError(f"{AZURITE} is missing: `make test` (or `npm ci --prefix tools/azurite`) installs Azurite")
        self.location.mkdir(parents=True, exist_ok=True)
        log_path = self.location / "azurite.log"
        logged_before = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [
                str(AZURITE), "--blobHost", LOOPBACK, "--blobPort", str(self.port), "--location", str(self.location),
                "--silent", "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--disableProductStyleUrl",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log_path, "rb") as logged:  # Azurite logs EADDRINUSE at once and may take seconds to exit
                logged.seek(logged_before)
                if b"EADDRINUSE" in logged.read():
                    self.stop()
                    raise PortTaken(f"{LOOPBACK}:{self.port} is in use: Azurite could not listen on it")
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited ({self.process.returncode}); see {log_path}")
            try:
                self.service().get_service_properties(connection_timeout=1, read_timeout=1)  # whoever holds the port may never answer
                return self
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"Azurite did not answer on {self.account_url} within {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.account_url, credential=EMULATOR_CREDENTIAL, retry_total=0)

    def blobs(self, container: str) -> dict[str, bytes]:
        """Every blob of `container`, name -> content ({} if the container does not exist)."""
        client = self.service().get_container_client(container)
        if not client.exists():
            return {}
        return {blob.name: client.download_blob(blob.name).readall() for blob in client.list_blobs()}

    def records(self, container: str) -> dict[str, list[dict]]:
        """JSON Lines blobs parsed: name -> records."""
        return {name: [json.loads(line) for line in data.splitlines()] for name, data in self.blobs(container).items()}

    def __enter__(self) -> BlobEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
