"""The local model-server launcher's argv follows the service's deployment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.service import load_service
from local import model_server as local_server

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


def test_server_command_matches_the_deployment(service):
    svc = load_service(service, "svc-one")
    argv = local_server.command_for(svc, 18001)
    assert argv == local_server.command(
        service / "score.py", service / "model", 18001, workers=1, scoring_timeout_ms=3000, source_dir=service, service_name=svc.name
    )
