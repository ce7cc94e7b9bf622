"""One translation: a v1 service (`contract.service.ModelService`) → what the router and the pod need.

Local mode and the cluster deployer both call these, so a service routes, authorizes, queues, scales
and times out the same way on a laptop and on AKS: the router's route (`route_for`, with a token
service's `token_authorization`), the autoscaler's settings (`autoscale_settings`), the discovery
annotations a model Service carries (`discovery_annotations`; a version's names its endpoint), those of a versioned
endpoint's own Service (`endpoint_annotations`), the gunicorn hard timeout (`worker_timeout_seconds`), the name of
its Kubernetes objects (`workload_name`), and where its models are and what `AZUREML_MODEL_DIR` says
(`models_subdir`, `model_dir_for`, `model_environment`): the image and the local launcher lay models
out by the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import PurePath, PurePosixPath
from typing import TypeVar

from aksinf_runtime import environment as runtime_env
from aksinf_runtime import registered_models
from contract import endpoints as contract_endpoints
from contract.service import ModelService, RegisteredModel
from contract.stack import ModelEntry
from contract.v1_files import DeploymentConfig
from router import discovery
from router.autoscaler import AutoscaleSettings
from router.canary import RolloutPolicy
from router.discovery import annotations_for
from router.spec import EndpointRoute, ServiceRoute, TokenAuthorization, VersionShare
from serving.endpoints import endpoint_traffic

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
        expected_service_time_ms=deployment.expected_service_time_ms,
        token_authorization=token_authorization(deployment),
    )


def discovery_annotations(
    service: ModelService, autoscale: AutoscaleSettings, keys_secret: str | None, endpoint: str | None = None
) -> dict[str, str]:
    """The annotations of the model's Kubernetes Service, which the in-cluster router discovers. A version of an
    endpoint (`endpoint`: the endpoint's name) also names its endpoint, and `keys_secret` is the endpoint's."""
    return annotations_for(
        replace(route_for(service), endpoint=endpoint), deployment=workload_name(service.name), autoscale=autoscale, keys_secret=keys_secret
    )


def endpoint_route_for(endpoint: ModelService, entry: ModelEntry, keys: tuple[str, ...] = ()) -> EndpointRoute:
    """The router's view of a valid endpoint entry with its configured split (`serving.endpoints.endpoint_traffic`):
    the name and auth are the entry's own service's (one scoring URI, one set of keys)."""
    traffic = endpoint_traffic(entry)
    if traffic is None:
        raise ValueError(f"{entry.name!r} has no versions: it is a plain service, not an endpoint")
    route = route_for(endpoint, keys)
    return EndpointRoute(
        name=route.name, namespace=route.namespace, auth=route.auth, keys=keys, token_authorization=route.token_authorization,
        versions=tuple(VersionShare(t.version, t.weight, t.mirror_percent, v.is_default, v.version_type)
                       for t, v in zip(traffic.versions, entry.versions, strict=True)),
    )


def rollout_policy_for(entry: ModelEntry) -> RolloutPolicy | None:
    """The entry's `rollout` as the router's canary loop reads it (None without one): the default version is the
    control a rollback returns to, the one answering treatment is what the steps move (contract/endpoints.py)."""
    rollout, moving = entry.rollout, contract_endpoints.canary(entry)
    if rollout is None or moving is None:
        return None
    control = next(v.name for v in entry.versions if v.is_default)
    return RolloutPolicy(control, moving.name, tuple(rollout.steps), rollout.analysis_window_seconds, rollout.max_server_error_rate,
                         rollout.max_p99_latency_ratio, rollout.min_requests)


def endpoint_annotations(endpoint: ModelService, entry: ModelEntry, keys_secret: str | None) -> dict[str, str]:
    """The annotations of a versioned endpoint's Service (no selector, no pods; `router.discovery.endpoint_annotations`
    writes them): its name, auth, keys Secret and token rules, its versions' configured split and, with a rollout
    policy, ROLLOUT. A traffic change changes these and nothing else."""
    return discovery.endpoint_annotations(endpoint_route_for(endpoint, entry), keys_secret=keys_secret, rollout=rollout_policy_for(entry))
