"""Train the sample model: Ridge regression on scikit-learn's bundled diabetes data.

The data set ships inside scikit-learn (nothing is downloaded) and Ridge has no
randomness, so every run writes the same model. `make test` / `make run` call
this when `model/diabetes-ridge.pkl` is missing.

    python examples/models/diabetes/train.py [--out model/diabetes-ridge.pkl]
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
ALPHA = 0.1
HOLDOUT_SEED = 0


def train() -> tuple[Ridge, float]:
    """Fit on 80 % of the rows; return the model and its R² on the other 20 %."""
    features, target = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.2, random_state=HOLDOUT_SEED)
    model = Ridge(alpha=ALPHA).fit(x_train, y_train)
    return model, float(r2_score(y_test, model.predict(x_test)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "model" / MODEL_FILE, help="where to write the model")
    args = parser.parse_args(argv)
    model, r2 = train()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    joblib.dump(model, temporary)
    temporary.replace(args.out)
    print(f"wrote {args.out} (Ridge alpha={ALPHA}, holdout R² {r2:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
