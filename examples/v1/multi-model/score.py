"""Two registered models in one service, written as a v1 user wrote it (MachineLearningNotebooks'
multi-model deployments): each model is found by name with `Model.get_model_path`.

Deployed with models=[diabetes-ridge:1, diabetes-ridge:2, diabetes-lasso:1]. With several models,
AZUREML_MODEL_DIR is the azureml-models folder itself, so the script asks for each by name (and
version, where it wants one that is not the latest).

Request:  {"data": [[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6], ...]}
Response: {"ridge": [...], "ridge_previous": [...], "lasso": [...], "lasso_features": [...]}
"""

import json
import os

import joblib
import numpy as np
from azureml.core.model import Model


def init():
    global ridge, ridge_previous, lasso, lasso_features

    # The current Ridge, pinned to version 2; version 1 is still deployed for comparison.
    ridge = joblib.load(Model.get_model_path("diabetes-ridge", version=2))
    ridge_previous = joblib.load(Model.get_model_path(model_name="diabetes-ridge", version=1))

    # Lasso was registered as a folder: get_model_path returns the folder (its only version is the latest).
    lasso_dir = Model.get_model_path("diabetes-lasso")
    lasso = joblib.load(os.path.join(lasso_dir, "model.pkl"))
    with open(os.path.join(lasso_dir, "features.json")) as f:
        lasso_features = json.load(f)["features"]


def run(raw_data):
    try:
        data = np.array(json.loads(raw_data)["data"])
        return {
            "ridge": ridge.predict(data).tolist(),
            "ridge_previous": ridge_previous.predict(data).tolist(),
            "lasso": lasso.predict(data).tolist(),
            "lasso_features": lasso_features,
        }
    except Exception as e:
        error = str(e)
        return error
