"""A `@rawhttp` entry script as v1 users wrote one for file uploads (the "advanced entry script"):
the raw Flask request (`AMLRequest`), the uploaded file from `request.files`, the answer built with
`AMLResponse`.

Deployed with models=[diabetes-csv:1]. Clients upload a CSV of diabetes feature rows (a header line
naming the ten features, any order, extra columns ignored) as the multipart field `csv`:

    curl -F csv=@sample-request.csv <scoring URI>

POST -> {"filename": "...", "rows": 2, "predictions": [...]}   (400 with {"error": ...} on a bad upload)
GET  -> a usage message
"""

import joblib
import pandas as pd
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from azureml.core.model import Model

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
USAGE = "POST a CSV file as the multipart field 'csv' (header: " + ",".join(FEATURES) + "), e.g. curl -F csv=@rows.csv <scoring URI>"


def init():
    global model

    model = joblib.load(Model.get_model_path("diabetes-csv"))


@rawhttp
def run(request: AMLRequest):
    if request.method == "GET":
        return AMLResponse(USAGE, 200)
    if request.method != "POST":
        return AMLResponse("bad request", 500)

    if "csv" not in request.files:
        return AMLResponse({"error": "no file in the multipart field 'csv'. " + USAGE}, 400, json_str=True)
    upload = request.files["csv"]
    try:
        rows = pd.read_csv(upload.stream)
    except (ValueError, UnicodeDecodeError) as e:
        return AMLResponse({"error": f"{upload.filename} is not a CSV file: {e}"}, 400, json_str=True)
    missing = [name for name in FEATURES if name not in rows.columns]
    if missing:
        return AMLResponse({"error": f"{upload.filename} has no column {', '.join(missing)}"}, 400, json_str=True)

    predictions = model.predict(rows[FEATURES].to_numpy(dtype=float))
    return AMLResponse({"filename": upload.filename, "rows": len(rows), "predictions": predictions.tolist()}, 200, json_str=True)
