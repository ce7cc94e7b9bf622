"""One translation: a v1 service (`contract.service.ModelService`) → what the router and the pod need.

Local mode and the cluster deployer both call these, so a service routes, authorizes, queues, scales
and times out the same way on a laptop and on AKS: the router's route (`route_for`, with a token
service's `token_authorization`), the autoscaler's settings (`autoscale_settings`), the discovery
annotations a model Service carries (`discovery_annotations`), the gunicorn hard timeout (`worker_timeout_seconds`), the name of
its Kubernetes objects (`workload_name`), and where its models are and what `AZUREML_MODEL_DIR` says
(`models_subdir`, `model_dir_for`, `model_environment`): the image and the local launcher lay models
out by the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import PurePath, PurePosixPath
from typing import TypeVar

from aksinf_runtime import environment as runtime_env
from aksinf_runtime import registered_models
from contract.service import ModelService, RegisteredModel
from contract.v1_files import DeploymentConfig
from router.autoscaler import AutoscaleSettings
from router.discovery import annotations_for
from router.spec import ServiceRoute, TokenAuthorization

# Azure ML turns autoscaling off on DevTest clusters (every replica count is fixed there).
FIXED_SCALE_PURPOSE = "DevTest"
V1_WORKER_TIMEOUT_SECONDS = 300  # gunicorn's hard kill in v1's images
WORKLOAD_PREFIX = "model-"
MODELS_DIR = registered_models.MODELS_DIR  # "azureml-models", relative to the working directory (v1)
IMAGE_APP_ROOT = PurePosixPath("/var/azureml-app")  # the model image's working directory, as in v1

PathT = TypeVar("PathT", bound=PurePath)


def models_subdir(service_name: str, registered: Sequence[RegisteredModel]) -> PurePosixPath:
    """Where a service's model folder goes, relative to the working directory.

    v1 layout (`model/<name>/<version>/...`): the folder *is* v1's `azureml-models/` tree, so its
    contents go to `azureml-models/` and `Model.get_model_path(name)` finds them. Flat: as before,
    `azureml-models/<service>/`."""
    return PurePosixPath(MODELS_DIR) if registered else PurePosixPath(MODELS_DIR, service_name)


def model_dir_for(registered: Sequence[RegisteredModel], models_root: PathT, flat_dir: PathT) -> PathT:
    """v1's `AZUREML_MODEL_DIR` rule: one registered model -> `<models_root>/<name>/<version>`; several
    (two versions of one name count as two) -> `<models_root>` (the `azureml-models` folder); a flat
    model folder -> `flat_dir`, where the deployer put it."""
    if len(registered) == 1:
        name, version = registered[0]
        return models_root / name / str(version)
    return models_root if registered else flat_dir


def registered_models_value(service: ModelService) -> str:
    """`AKSINF_REGISTERED_MODELS` for a service: `name:version,...`, empty for a flat model folder."""
    return registered_models.encode(service.registered_models)


def model_environment(service: ModelService) -> dict[str, str]:
    """The model variables of the service's container (its image sets them; a Pod spec may repeat them):
    `AZUREML_MODEL_DIR` by v1's rule under `/var/azureml-app`, and `AKSINF_REGISTERED_MODELS`."""
    root = IMAGE_APP_ROOT / MODELS_DIR
    model_dir = model_dir_for(service.registered_models, root, IMAGE_APP_ROOT / models_subdir(service.name, ()))
    return {runtime_env.MODEL_DIR: str(model_dir), runtime_env.REGISTERED_MODELS: registered_models_value(service)}


def workload_name(service_name: str) -> str:
    """The Deployment, Service, ServiceAccount and pod label of a model service."""
    return f"{WORKLOAD_PREFIX}{service_name}"


def worker_timeout_seconds(scoring_timeout_ms: int) -> int:
    """gunicorn's hard kill must come after the scoring timeout, or long allowed requests get dropped."""
    return max(V1_WORKER_TIMEOUT_SECONDS, math.ceil(scoring_timeout_ms / 1000) + 5)


def autoscale_settings(service: ModelService, purpose: str, scale_down_window_seconds: float = 60.0) -> AutoscaleSettings:
    """The autoscaler's settings for a v1 service; off for DevTest clusters, as in Azure ML."""
    deployment = service.deployment
    return AutoscaleSettings(
        enabled=deployment.autoscale_on and purpose != FIXED_SCALE_PURPOSE,
        min_replicas=deployment.min_replicas,
        max_replicas=deployment.max_replicas,
        target_utilization=deployment.target_utilization,
        refresh_seconds=deployment.refresh_seconds,
        scale_down_window_seconds=scale_down_window_seconds,
        max_concurrent=deployment.max_concurrent,
        fixed_replicas=deployment.initial_replicas,
    )


def initial_replicas(autoscale: AutoscaleSettings) -> int:
    """Replicas at creation: the fixed count when autoscaling is off, else the minimum."""
    return autoscale.min_replicas if autoscale.enabled else autoscale.fixed_replicas


def token_authorization(deployment: DeploymentConfig) -> TokenAuthorization:
    """`tokenAuthorization` as the router enforces it (empty when the deployment has none)."""
    rules = deployment.token_authorization
    if rules is None:
        return TokenAuthorization()
    return TokenAuthorization(tuple(rules.required_roles), tuple(rules.allowed_client_ids), rules.audience)


def route_for(service: ModelService, keys: tuple[str, ...] = ()) -> ServiceRoute:
    """The router's view of a service (endpoints are filled in by discovery or the local actuator)."""
    deployment = service.deployment
    return ServiceRoute(
        name=service.name,
        namespace=service.namespace,
        auth=deployment.auth_mode,
        keys=keys,
        scoring_timeout_ms=deployment.scoring_timeout_ms,
        max_concurrent=deployment.max_concurrent,
        max_queue_wait_ms=deployment.max_queue_wait_ms,
        token_authorization=token_authorization(deployment),
    )


def discovery_annotations(service: ModelService, autoscale: AutoscaleSettings, keys_secret: str | None) -> dict[str, str]:
    """The annotations of the model's Kubernetes Service, which the in-cluster router discovers."""
    return annotations_for(
        route_for(service), deployment=workload_name(service.name), autoscale=autoscale, keys_secret=keys_secret
    )
