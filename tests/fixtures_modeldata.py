"""Model data fixtures: a real Azurite on 127.0.0.1 and a clean process-wide collector state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aksinf_runtime import collector
from aksinf_runtime.shipping import Shipper, ShipperSettings
from local.blob_emulator import BlobEmulator


@pytest.fixture
def blob_emulator(tmp_path):
    emulator = BlobEmulator(tmp_path / "azurite").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def fresh_collection(monkeypatch):
    """No shipper left from another test; the one a test starts is closed after it."""
    monkeypatch.setattr(collector, "_shipper", None)
    yield
    if collector._shipper is not None:
        collector._shipper.close(timeout=1)


def shipper_settings(tmp_path: Path, destination: str | None, **overrides) -> ShipperSettings:
    """Shipper settings fast enough for tests: short batches, retries and adoption."""
    values = dict(
        spool_root=tmp_path / "spool", destination=destination, flush_interval=0.05, batch_seconds=0.3,
        retry_initial=0.1, retry_max=0.5, adopt_every_seconds=0.5, shutdown_seconds=5,
    )
    return ShipperSettings(**{**values, **overrides})


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def numbered(shipper: Shipper, numbers, folder: str = "svc/model/1/inputs/2026/11/25/inputs") -> None:
    for n in numbers:
        assert shipper.enqueue(folder, f'{{"n":{n}}}\n', 1)
