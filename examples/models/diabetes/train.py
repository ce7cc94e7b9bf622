"""Train the sample's two model versions: Ridge regression on scikit-learn's bundled diabetes data.

The data set ships inside scikit-learn (nothing is downloaded) and Ridge has no randomness, so every
run writes the same models. `make test` / `make run` call this when a model file is missing.

- version 1, `model/diabetes-ridge.pkl`: alpha 0.1 (the sample's control, `diabetes-v1`);
- version 2, `model-v2/diabetes-ridge.pkl`: alpha 1.0, a stronger penalty whose predictions differ
  (the sample's treatment, `diabetes-v2`, a 10 % canary: examples/models/diabetes/endpoint.yaml).

Both keep the file name `score.py` loads from `AZUREML_MODEL_DIR`; a version picks its folder with `modelDir`.

    python examples/models/diabetes/train.py [--out-dir examples/models/diabetes]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
MODEL_FILE = "diabetes-ridge.pkl"
# model folder (relative to the service folder) -> Ridge alpha
VERSIONS = {"model": 0.1, "model-v2": 1.0}
HOLDOUT_SEED = 0


def train(alpha: float) -> tuple[Ridge, float]:
    """Fit on 80 % of the rows; return the model and its R² on the other 20 %."""
    features, target = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.2, random_state=HOLDOUT_SEED)
    model = Ridge(alpha=alpha).fit(x_train, y_train)
    return model, float(r2_score(y_test, model.predict(x_test)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="the service folder the model folders go in")
    args = parser.parse_args(argv)
    for folder, alpha in VERSIONS.items():
        model, r2 = train(alpha)
        out = args.out_dir / folder / MODEL_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_suffix(".tmp")
        joblib.dump(model, temporary)
        temporary.replace(out)
        print(f"wrote {out} (Ridge alpha={alpha}, holdout R² {r2:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
