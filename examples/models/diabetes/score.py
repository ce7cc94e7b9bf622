"""Entry script for the diabetes sample, in Azure ML v1 style.

`init()` runs once per server worker and loads the model from
`AZUREML_MODEL_DIR` (set by the platform, as in v1). `run()` receives the raw
request body and returns one prediction (disease progression) per row.

Inputs and predictions are collected (v1 `ModelDataCollector`; the deployment turns it on with
`dataCollection.storageEnabled`); where collection is off, `collect()` does nothing.

Request:  {"data": [[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6], ...]}
Response: [151.2, ...]
"""

import json
import os

import joblib
import numpy

from aksinf_runtime import ModelDataCollector

MODEL_FILE = "diabetes-ridge.pkl"
FEATURE_NAMES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
FEATURES = len(FEATURE_NAMES)

model = None
inputs_dc = predictions_dc = None


def init():
    global model, inputs_dc, predictions_dc
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], MODEL_FILE))
    inputs_dc = ModelDataCollector("diabetes-ridge", designation="inputs", feature_names=FEATURE_NAMES, model_version="1")
    predictions_dc = ModelDataCollector("diabetes-ridge", designation="predictions", feature_names=["progression"], model_version="1")


def run(raw_data):
    rows = numpy.asarray(json.loads(raw_data)["data"], dtype=float)
    if rows.ndim != 2 or rows.shape[1] != FEATURES:
        raise ValueError(f"'data' must be a list of rows of {FEATURES} numbers; got shape {rows.shape}")
    predictions = model.predict(rows).tolist()
    correlation_id = inputs_dc.collect(rows)
    predictions_dc.collect([[p] for p in predictions], correlation_id)
    return predictions
