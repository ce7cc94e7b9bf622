"""aks-inference's stand-in for `azureml.exceptions`: the errors `Model.get_model_path` raises."""

from aksinf_runtime.registered_models import (
    AzureMLException,
    ModelNotFoundException,
    WebserviceException,
)

__all__ = ["AzureMLException", "ModelNotFoundException", "WebserviceException"]
