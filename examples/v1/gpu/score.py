"""An entry script for a GPU deployment, as v1 users wrote one with inference-schema's nested types (the
shape of Azure AutoML's generated scoring scripts): a pandas DataFrame inside a standard Python dict,
plus standard-type global parameters; the swagger (swagger.json) comes from the samples.

Deployed with models=[diabetes-elasticnet:2] on a GPU node (`gpuCores: 1`, CUDA base image). The model
is scikit-learn, which computes on the CPU: the same script serves in local mode, where no GPU is used.

Request:  {"Inputs": {"data": [{"age": ..., "sex": ..., ..., "s6": ...}, ...]},
           "GlobalParameters": {"decimals": 2}}
Response: {"Results": [...], "device": "cpu"}
"""

import os

import joblib
import numpy as np
import pandas as pd
from azureml.core.model import Model
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import (
    StandardPythonParameterType,
)
from inference_schema.schema_decorators import input_schema, output_schema

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def init():
    global model

    # One model deployed: AZUREML_MODEL_DIR is .../azureml-models/diabetes-elasticnet/2
    print("AZUREML_MODEL_DIR:", os.getenv("AZUREML_MODEL_DIR"))
    model = joblib.load(Model.get_model_path("diabetes-elasticnet"))


data_sample = PandasParameterType(pd.DataFrame(
    [[0.03808, 0.05068, 0.0617, 0.02187, -0.04422, -0.03482, -0.0434, -0.00259, 0.01991, -0.01765]],
    columns=FEATURES,
))
inputs_sample = StandardPythonParameterType({"data": data_sample})
parameters_sample = StandardPythonParameterType({"decimals": 2})
results_sample = StandardPythonParameterType({"Results": [206.12], "device": "cpu"})


@input_schema("Inputs", inputs_sample)
@input_schema("GlobalParameters", parameters_sample)
@output_schema(results_sample)
def run(Inputs, GlobalParameters):
    data = Inputs["data"]  # a pandas DataFrame, columns as in the sample
    predictions = model.predict(data[FEATURES].to_numpy(dtype=float))
    decimals = int(GlobalParameters.get("decimals", 2))
    return {"Results": np.round(predictions, decimals).tolist(), "device": "cpu"}
