"""The diabetes sample trains deterministically and its entry script scores."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from contract.stack import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_trains_deterministically_and_scores(tmp_path, monkeypatch):
    train = _module(SAMPLE / "train.py", "diabetes_train")
    first, second = tmp_path / "a" / train.MODEL_FILE, tmp_path / "b" / train.MODEL_FILE
    assert train.main(["--out", str(first)]) == 0
    assert train.main(["--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    _, r2 = train.train()
    assert r2 > 0.3  # a fitted model, not a constant

    monkeypatch.setenv("AZUREML_MODEL_DIR", str(first.parent))
    score = _module(SAMPLE / "score.py", "diabetes_score")
    score.init()
    request = (SAMPLE / "sample-request.json").read_text()
    predictions = score.run(request)
    assert len(predictions) == len(json.loads(request)["data"])
    assert all(isinstance(p, float) and math.isfinite(p) for p in predictions)
    with pytest.raises(ValueError, match="10 numbers"):
        score.run(json.dumps({"data": [[1, 2]]}))
