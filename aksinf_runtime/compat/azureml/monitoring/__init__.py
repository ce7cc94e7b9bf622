"""aks-inference's stand-in for `azureml.monitoring` (azureml-monitoring): `ModelDataCollector`.

Same arguments as v1; records go where the deployment's `dataCollection.storageEnabled` sends them
(`aksinf_runtime.collector`). Used only when no real azureml-monitoring is importable.
"""

from aksinf_runtime.collector import ModelDataCollector

__all__ = ["ModelDataCollector"]
