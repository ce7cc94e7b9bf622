"""Build the model files of the v1 examples, laid out as v1 registered and deployed them.

Every model is fitted on scikit-learn's bundled diabetes data set (nothing is downloaded; Ridge, and
Lasso and ElasticNet with their default cyclic coordinate descent, have no randomness, so every run
writes the same bytes). Each service folder's `model/` is in
v1's layout, `model/<registered name>/<version>/<one file or folder>`:

    multi-model/model/diabetes-ridge/1/ridge.pkl          Ridge, alpha 1.0 (the previous version)
    multi-model/model/diabetes-ridge/2/ridge.pkl          Ridge, alpha 0.1 (the current version)
    multi-model/model/diabetes-lasso/1/lasso/             a folder: model.pkl + features.json
    mlopspython/model/diabetes_regression_model.pkl/3/diabetes_regression_model.pkl
    data-collection/model/diabetes-ridge/4/diabetes-ridge.pkl
    rawhttp-upload/model/diabetes-csv/1/model.joblib    Lasso, alpha 0.1
    gpu/model/diabetes-elasticnet/2/model.pkl           ElasticNet, alpha 0.001 (scikit-learn: CPU, on a GPU node too)

    python examples/v1/train.py [--root examples/v1]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet, Lasso, Ridge

HERE = Path(__file__).resolve().parent
FEATURE_NAMES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

# (service folder, registered model name, version, file inside the version folder, estimator)
MODELS = (
    ("multi-model", "diabetes-ridge", 1, "ridge.pkl", lambda: Ridge(alpha=1.0)),
    ("multi-model", "diabetes-ridge", 2, "ridge.pkl", lambda: Ridge(alpha=0.1)),
    ("multi-model", "diabetes-lasso", 1, "lasso/model.pkl", lambda: Lasso(alpha=0.05)),
    ("mlopspython", "diabetes_regression_model.pkl", 3, "diabetes_regression_model.pkl", lambda: Ridge(alpha=0.5)),
    ("data-collection", "diabetes-ridge", 4, "diabetes-ridge.pkl", lambda: Ridge(alpha=0.1)),
    ("rawhttp-upload", "diabetes-csv", 1, "model.joblib", lambda: Lasso(alpha=0.1)),
    ("gpu", "diabetes-elasticnet", 2, "model.pkl", lambda: ElasticNet(alpha=0.001)),
)
# Beside a model saved as a folder: what v1 users kept next to the weights.
EXTRA_FILES = {("multi-model", "diabetes-lasso", 1): {"lasso/features.json": {"features": FEATURE_NAMES}}}


def outputs(root: Path = HERE) -> list[Path]:
    """Every file this script writes (the Makefile's targets)."""
    paths = [root / folder / "model" / name / str(version) / rel for folder, name, version, rel, _ in MODELS]
    for (folder, name, version), files in EXTRA_FILES.items():
        paths += [root / folder / "model" / name / str(version) / rel for rel in files]
    return paths


def _write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel runs never share a temp file
    write(temporary)
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="the folder holding the example services")
    args = parser.parse_args(argv)
    features, target = load_diabetes(return_X_y=True)
    for folder, name, version, rel, estimator in MODELS:
        model = estimator().fit(features, target)
        path = args.root / folder / "model" / name / str(version) / rel
        _write(path, lambda temporary, model=model: joblib.dump(model, temporary))
        print(f"wrote {path}")
    for (folder, name, version), files in EXTRA_FILES.items():
        for rel, content in files.items():
            path = args.root / folder / "model" / name / str(version) / rel
            _write(path, lambda temporary, content=content: temporary.write_text(json.dumps(content, sort_keys=True) + "\n"))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
