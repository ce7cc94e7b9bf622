"""Entry script for the diabetes sample, in Azure ML v1 style.

`init()` runs once per server worker and loads the model from
`AZUREML_MODEL_DIR` (set by the platform, as in v1). `run()` receives the raw
request body and returns one prediction (disease progression) per row.

Request:  {"data": [[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6], ...]}
Response: [151.2, ...]
"""

import json
import os

import joblib
import numpy

MODEL_FILE = "diabetes-ridge.pkl"
FEATURES = 10

model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], MODEL_FILE))


def run(raw_data):
    rows = numpy.asarray(json.loads(raw_data)["data"], dtype=float)
    if rows.ndim != 2 or rows.shape[1] != FEATURES:
        raise ValueError(f"'data' must be a list of rows of {FEATURES} numbers; got shape {rows.shape}")
    return model.predict(rows).tolist()
