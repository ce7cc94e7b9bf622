"""Registered models at scoring time: v1's `Model.get_model_path` and the models an image carries.

Azure ML v1 copied each deployed model to `azureml-models/<name>/<version>/<file or folder>` under the
container's working directory (`/var/azureml-app`), and entry scripts found it with
`azureml.core.model.Model.get_model_path(name[, version])`. `get_model_path` here answers the same
way without azureml-core (azureml-core 1.x `Model._get_model_path_local`, same search, same errors):

1. `azureml-models/<name>` relative to the working directory; version None means the highest
   integer version folder there;
2. `azureml-models/<name>/<version>` must hold exactly one file or folder, whose path is returned;
3. otherwise `./<name>` in the working directory, if it exists;
4. otherwise `ModelNotFoundException` (with an explicit version: `WebserviceException`, as v1 raised
   when a versioned lookup found nothing and no workspace was at hand).

The entry script reaches it through `aksinf_runtime/compat/azureml` (see `serve.install_v1_compat`),
which is put at the END of `sys.path`, so a real azureml-core always wins.

`AKSINF_REGISTERED_MODELS` (`environment.REGISTERED_MODELS`) lists the models of a v1-layout service as
`name:version,name:version` (`encode` / `decode`), so `ModelDataCollector` can fill in the version v1 on
AKS filled in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from aksinf_runtime import environment

MODELS_DIR = "azureml-models"  # v1: relative to the working directory
log = logging.getLogger("aksinf_runtime.models")


class AzureMLException(Exception):
    """azureml-core's base exception, as far as scoring-time code uses it: a `message` attribute."""

    def __init__(self, exception_message: str, inner_exception: BaseException | None = None, **_):
        super().__init__(exception_message)
        self.message = exception_message
        self.inner_exception = inner_exception


class WebserviceException(AzureMLException):
    """v1's `azureml.exceptions.WebserviceException`."""


class ModelNotFoundException(AzureMLException):
    """v1's `azureml.exceptions.ModelNotFoundException`."""


def get_model_path(model_name: str, version: int | None = None, _workspace=None) -> str:
    """v1's `Model.get_model_path`, answered from the working directory (there is no workspace to
    download from: `_workspace` is accepted and ignored, the image already holds every model)."""
    if version is not None and not isinstance(version, int):
        raise WebserviceException("version should be an int")
    if _workspace is not None:
        log.debug("get_model_path(%r): _workspace is ignored; models are read from %s", model_name, MODELS_DIR)
    if version is not None:
        try:
            return _local_path(model_name, version)
        except ModelNotFoundException as error:
            raise WebserviceException(error.message) from None
    return _local_path(model_name, version)


def _local_path(model_name: str, version: int | None) -> str:
    if model_name is None:
        raise WebserviceException("model_name is None")
    candidate = os.path.join(MODELS_DIR, model_name)
    if not os.path.exists(candidate):
        return _from_root(model_name)
    chosen = _latest_version(os.listdir(candidate)) if version is None else version
    candidate = os.path.join(candidate, str(chosen))
    if not os.path.exists(candidate):
        return _from_root(model_name)
    entries = os.listdir(candidate)
    if len(entries) != 1:
        raise WebserviceException(f"Dir {candidate} can contain only 1 file or folder. Found {entries}")
    return os.path.join(candidate, entries[0])


def _latest_version(versions: list[str]) -> int:
    if not versions:
        raise WebserviceException("versions is empty")
    return max(int(version) for version in versions)  # v1: a non-integer entry raises ValueError


def _from_root(model_name: str) -> str:
    if os.path.exists(model_name):
        return model_name
    raise ModelNotFoundException(
        f"Model {model_name} not found in cache at {MODELS_DIR} or in current working directory {os.getcwd()}. "
        "For more info, set logging level to DEBUG."
    )


# ----------------------------------------------------------------------------- the image's models


def encode(models: Iterable[tuple[str, int]]) -> str:
    """`AKSINF_REGISTERED_MODELS`'s value: `name:version` pairs, comma-separated, sorted."""
    return ",".join(f"{name}:{version}" for name, version in sorted(models))


def decode(value: str) -> tuple[tuple[str, int], ...]:
    """The (name, version) pairs of `encode`; malformed items are skipped (and logged)."""
    models = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, version = item.rpartition(":")
        if name and version.isdigit():
            models.append((name, int(version)))
        else:
            log.warning("%s: ignoring %r (expected name:version)", environment.REGISTERED_MODELS, item)
    return tuple(sorted(models))


def registered_models(environ: Mapping[str, str] | None = None) -> tuple[tuple[str, int], ...]:
    """The registered models this replica serves (empty for a flat model folder)."""
    environ = os.environ if environ is None else environ
    return decode(environ.get(environment.REGISTERED_MODELS, ""))


def registered_version(model_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The version of `model_name` deployed here (the highest, when several are), or None."""
    versions = [version for name, version in registered_models(environ) if name == model_name]
    return str(max(versions)) if versions else None
