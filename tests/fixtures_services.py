"""Service-folder fixtures shared by the contract and local-mode tests."""

from __future__ import annotations

import json
from pathlib import Path

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
