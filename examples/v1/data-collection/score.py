"""Model data collection as a v1 entry script wrote it: azureml.monitoring's ModelDataCollector for
inputs and predictions, and the raw request (@rawhttp) to read the request id header.

The deployment turns collection on (`dataCollection.storageEnabled`, v1's collect_model_data=True);
the collectors leave model_version out, and get the deployed version (4), as on v1's AKS.

Request:  {"data": [[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6], ...]}   (POST)
Response: {"predictions": [...], "x_ms_request_id": "..."}
"""

import json

import joblib
import numpy as np
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from azureml.core.model import Model
from azureml.monitoring import ModelDataCollector

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def init():
    global model, inputs_dc, prediction_dc

    model = joblib.load(Model.get_model_path(model_name="diabetes-ridge"))
    inputs_dc = ModelDataCollector("diabetes-ridge", designation="inputs", feature_names=FEATURES)
    prediction_dc = ModelDataCollector("diabetes-ridge", designation="predictions", feature_names=["progression"])


@rawhttp
def run(request: AMLRequest):
    if request.method != "POST":
        return AMLResponse("POST a JSON body {\"data\": [[...10 features...], ...]}", 405)
    request_id = request.headers.get("X-Ms-Request-Id", "")
    data = np.array(json.loads(request.get_data(as_text=True))["data"])
    predictions = model.predict(data)

    correlation = inputs_dc.collect(data)
    prediction_dc.collect(predictions.reshape(-1, 1), correlation)

    print(f"scored {len(predictions)} rows for request {request_id}")
    return AMLResponse({"predictions": predictions.tolist(), "x_ms_request_id": request_id}, 200, json_str=True)
