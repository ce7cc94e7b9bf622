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


def test_sample_trains_both_versions_deterministically_and_scores(tmp_path, monkeypatch):
    train = _module(SAMPLE / "train.py", "diabetes_train")
    assert train.main(["--out-dir", str(tmp_path / "a")]) == 0
    assert train.main(["--out-dir", str(tmp_path / "b")]) == 0
    for folder in train.VERSIONS:
        assert (tmp_path / "a" / folder / train.MODEL_FILE).read_bytes() == (tmp_path / "b" / folder / train.MODEL_FILE).read_bytes()
    for alpha in train.VERSIONS.values():
        _, r2 = train.train(alpha)
        assert r2 > 0.3  # a fitted model, not a constant

    request = (SAMPLE / "sample-request.json").read_text()
    scored = {}
    for folder in train.VERSIONS:
        monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "a" / folder))
        score = _module(SAMPLE / "score.py", f"diabetes_score_{folder}")
        score.init()
        scored[folder] = score.run(request)
        assert len(scored[folder]) == len(json.loads(request)["data"])
        assert all(isinstance(p, float) and math.isfinite(p) for p in scored[folder])
    first, second = scored.values()
    assert all(abs(a - b) > 1e-3 for a, b in zip(first, second))  # two versions that really differ
    with pytest.raises(ValueError, match="10 numbers"):
        score.run(json.dumps({"data": [[1, 2]]}))
