"""What aks-inference puts inside every model image, beside the inference server.

- `ModelDataCollector`: v1's `azureml.monitoring.ModelDataCollector`, writing JSON Lines to blob storage.
- `logs`: the model server's log lines as JSON, carrying the router's request id.
- `serve`: the container entry point (`python -m aksinf_runtime.serve`).

Only the standard library is imported eagerly; the Azure SDK is loaded when uploads start.
"""

from aksinf_runtime.collector import ModelDataCollector

__all__ = ["ModelDataCollector"]
