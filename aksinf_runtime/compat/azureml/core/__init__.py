"""aks-inference's stand-in for `azureml.core` at scoring time: only `Model` (for `Model.get_model_path`).

Used only when no real azureml-core is importable (this tree is the last entry of `sys.path`).
"""

from azureml.core.model import Model

__all__ = ["Model"]
