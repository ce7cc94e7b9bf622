"""An MLOpsPython-style entry script, unchanged from v1: one registered model found through
AZUREML_MODEL_DIR, inference-schema for the swagger, and the request id logged for correlation.

With one deployed model, AZUREML_MODEL_DIR is .../azureml-models/<model name>/<version>, so the
name is its second-to-last segment. X-Ms-Request-Id carries the request id the router gave the
request (its x-request-id), unless the client sent its own.
"""

import json
import os

import joblib
import numpy
from azureml.core.model import Model
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global model

    # AZUREML_MODEL_DIR is set during deployment: ./azureml-models/$MODEL_NAME/$VERSION
    model_name = os.getenv("AZUREML_MODEL_DIR").split("/")[-2]
    model_path = Model.get_model_path(model_name)
    model = joblib.load(model_path)


input_sample = numpy.array([
    [0.03808, 0.05068, 0.0617, 0.02187, -0.04422, -0.03482, -0.0434, -0.00259, 0.01991, -0.01765],
    [-0.00188, -0.04464, -0.05147, -0.02633, -0.00845, -0.01916, 0.07441, -0.03949, -0.06833, -0.0922]])
output_sample = numpy.array([206.1, 69.5])


@input_schema("data", NumpyParameterType(input_sample))
@output_schema(NumpyParameterType(output_sample))
def run(data, request_headers):
    result = model.predict(data)

    # One line per request, joinable with the router's access log on the request id.
    request_id = request_headers.get("X-Ms-Request-Id", "")
    print(json.dumps({"scored": len(result), "x_ms_request_id": request_id, "traceparent": request_headers.get("Traceparent", "")}))

    return {"result": result.tolist(), "request_id": request_id}
