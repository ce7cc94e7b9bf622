"""What aks-inference puts inside every model image, beside the inference server.

- `ModelDataCollector`: v1's `azureml.monitoring.ModelDataCollector`, writing JSON Lines to blob storage.
- `logs`: the model server's log lines as JSON, carrying the router's request id.
- `serve`: the container entry point (`python -m aksinf_runtime.serve`).
- `registered_models`: v1's `Model.get_model_path` and the models the image carries; `compat/azureml`
  makes `from azureml.core.model import Model` and `from azureml.monitoring import ModelDataCollector`
  work without azureml-core (appended to the end of `sys.path`, so a real azureml-core always wins).
- `request_ids`: v1's `X-Ms-Request-Id` header on the request the entry script sees.
- `deadlines`: a request past its deadline (the router's headers) or whose client has gone gets 504
  instead of a `run()`.

Only the standard library is imported eagerly; the Azure SDK is loaded when uploads start.
"""

from aksinf_runtime.collector import ModelDataCollector

__all__ = ["ModelDataCollector"]
