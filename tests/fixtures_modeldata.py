"""Model data fixtures: a real Azurite on 127.0.0.1 and a clean process-wide collector state."""

from __future__ import annotations

import pytest

from aksinf_runtime import collector
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
