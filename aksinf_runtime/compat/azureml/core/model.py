"""aks-inference's stand-in for `azureml.core.model` at scoring time.

`Model.get_model_path(model_name, version=None, _workspace=None)` searches
`azureml-models/<name>/<version>` under the working directory exactly as azureml-core 1.x does
(`aksinf_runtime.registered_models.get_model_path`). Nothing else of azureml-core's `Model` (register,
deploy, download) exists at scoring time in a v1 container either without a workspace.
"""

from aksinf_runtime.registered_models import MODELS_DIR, get_model_path

__all__ = ["MODELS_DIR", "Model"]


class Model:
    """Only the scoring-time part of v1's `azureml.core.model.Model`."""

    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None):
        """The path of a deployed model's one file or folder (v1 semantics and errors)."""
        return get_model_path(model_name, version, _workspace)
