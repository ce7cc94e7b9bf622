"""Azure ML v1 service configs: `deploymentconfig.json`, `inferenceconfig.json` and the service folder.

The models mirror `AksWebservice.deploy_configuration(...)` and `InferenceConfig(...)`
from azureml-core 1.x: the same JSON keys, the same defaults and the same
validation rules, so an existing v1 deployment moves over unchanged. Where v1
was lax we are stricter, and say so in the error (see docs/models.md, "Deviations"):
unknown keys are rejected with the closest valid key instead of being ignored,
values are type-checked strictly (`"2"` is not an integer), and rules Kubernetes
would enforce later (liveness `successThreshold` 1) are reported up front.

Every problem is collected into one `ConfigError` whose keys are full paths
(`models[0].deployment.autoScaler.minReplicas`), with the bad value and what is allowed.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from contract import limits
from contract.errors import REDACTED, ConfigIssue, Section, issues_from, join_key

# v1 resolves these when the deployment leaves them out ([aks] docstrings).
DEFAULT_SCORING_TIMEOUT_MS = 60_000
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 10
DEFAULT_REFRESH_SECONDS = 1
DEFAULT_TARGET_UTILIZATION = 70

# Keys v1 silently ignored; rejecting them is right, but say where the setting lives now.
_MOVED_KEYS = {
    "sslEnabled": "TLS is terminated by the router for every service; configure it in the stack, not per service",
    "schemaFile": "put a swagger.json next to the entry script (the inference server serves it) or use inference-schema",
    "blobfuseEnabled": "v1 never read it from the file; model files are always copied into the replica",
}


# --------------------------------------------------------------------------- value types

_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def check_service_name(value: str) -> str:
    """v1's service-name rule; raises ValueError saying what is allowed."""
    if not (3 <= len(value) <= 32 and _SERVICE_NAME.match(value)):
        raise ValueError(
            "must be 3-32 characters of lowercase letters, digits and dashes, starting with a letter and "
            "ending with a letter or digit (v1 service name rule ^[a-z]([-a-z0-9]*[a-z0-9])?$)"
        )
    return value


_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{,61}[a-z0-9])?$")


def _namespace(value: str) -> str:
    if not _NAMESPACE.match(value):
        raise ValueError("must be a Kubernetes namespace name: 1-63 lowercase letters, digits or dashes, alphanumeric at both ends")
    reserved = limits.reserved_namespace_problem(value)
    if reserved:
        raise ValueError(reserved)
    return value


_KEY = re.compile(r"^[A-Za-z0-9+/=_.~-]{16,256}$")


def check_auth_key(value: str) -> str:
    """A user-supplied key: v1's characters and length, and enough entropy to be a secret."""
    if not _KEY.match(value):
        raise ValueError("must be 16-256 characters of letters, digits and +/=_.~- (sent as 'Authorization: Bearer <key>')")
    if limits.key_entropy_bits(value) < limits.MIN_KEY_ENTROPY_BITS:
        raise ValueError(
            f"is too easy to guess (under {limits.MIN_KEY_ENTROPY_BITS} bits of entropy); allowed: a random key, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))', or leave keys out to have them generated"
        )
    return value


def _compute_type(value: str) -> str:
    if value.upper() != "AKS":
        raise ValueError("must be AKS (any case): this platform runs v1 AKS deployments; ACI and local configs have no AKS settings")
    return "AKS"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _at_least(value: float, minimum: float, meaning: str) -> float:
    if value < minimum:
        raise ValueError(f"must be at least {minimum} ({meaning}: the smallest quantity a Kubernetes manifest can carry)")
    return value


Namespace = Annotated[str, AfterValidator(_namespace)]
AuthKey = Annotated[str, AfterValidator(check_auth_key)]
# Every count, period and duration: int32, what Kubernetes' fields and Envoy's thresholds accept.
PositiveInt = Annotated[int, Field(gt=0, le=limits.INT32_MAX)]
CpuCores = Annotated[
    float, Field(gt=0, le=limits.MAX_CPU_CORES, allow_inf_nan=False), AfterValidator(lambda v: _at_least(v, limits.MIN_CPU_CORES, "one millicore"))
]
MemoryGb = Annotated[
    float, Field(gt=0, le=limits.MAX_MEMORY_GB, allow_inf_nan=False), AfterValidator(lambda v: _at_least(v, limits.MIN_MEMORY_GB, "about one MiB"))
]
GpuCount = Annotated[int, Field(ge=0, le=limits.INT32_MAX)]


class V1Section(Section):
    """v1 JSON keys; strict types: a JSON file says 2, not "2"."""

    model_config = ConfigDict(strict=True)


# --------------------------------------------------------------------------- deploymentconfig.json


class AutoScaler(V1Section):
    """`autoScaler`. None = not given: v1 rejects replica settings unless autoscaling is explicitly on."""

    autoscale_enabled: bool | None = None
    min_replicas: PositiveInt | None = None
    max_replicas: PositiveInt | None = None
    refresh_period_in_seconds: PositiveInt | None = None
    target_utilization: PositiveInt | None = None


class ContainerResourceRequirements(V1Section):
    """Per-replica requests and limits (`cpu_cores`, `memory_gb`, `*_limit`)."""

    cpu: CpuCores = 0.1
    memory_in_gb: MemoryGb = Field(default=0.5, alias="memoryInGB")
    cpu_limit: CpuCores | None = None
    memory_in_gb_limit: MemoryGb | None = Field(default=None, alias="memoryInGBLimit")
    gpu: GpuCount | None = None


class LivenessProbeRequirements(V1Section):
    period_seconds: PositiveInt = 10
    initial_delay_seconds: PositiveInt = 310
    # v1 documents 2 (docstring, docs) and deserialises 1; we follow the documentation.
    timeout_seconds: PositiveInt = 2
    success_threshold: PositiveInt = 1
    failure_threshold: PositiveInt = 3


class Keys(V1Section):
    primary_key: AuthKey | None = None
    secondary_key: AuthKey | None = None


class DataCollection(V1Section):
    storage_enabled: bool = False


# `tokenAuthorization`: Entra's rules for what a token may carry. An app role's value is at most 120
# printable ASCII characters, no space, double quote or backslash, and does not start with "."
# (https://learn.microsoft.com/graph/api/resources/approle); a client (application) id is a GUID.
_APP_ROLE = re.compile(r"^(?!\.)[!#-\[\]-~]{1,120}$")
# The router matches at most this many roles or clients per service, each value and the audience at most
# this long (router.spec.MAX_TOKEN_CLAIM_VALUES / MAX_TOKEN_CLAIM_LENGTH; a test keeps them equal).
MAX_TOKEN_CLAIM_VALUES = 32
MAX_AUDIENCE_LENGTH = 256


def _app_role(value: str) -> str:
    if not _APP_ROLE.match(value):
        raise ValueError(
            "must be an Entra app role value: 1-120 characters, letters, digits and printable ASCII symbols except "
            "double quote and backslash, no spaces, not starting with '.' (the value in the token's roles claim)"
        )
    return value


def _client_id(value: str) -> str:
    if not limits.is_guid(value):
        raise ValueError("must be an application (client) id, a GUID such as 00000000-0000-0000-0000-000000000000 (the token's azp or appid)")
    return value.lower()


def _token_audience(value: str) -> str:
    if not 0 < len(value) <= MAX_AUDIENCE_LENGTH or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError(
            f"must be the token audience (aud) this service accepts, 1-{MAX_AUDIENCE_LENGTH} characters without "
            "spaces or control characters, e.g. api://fraud-model or the app's client id"
        )
    return value


class TokenAuthorization(V1Section):
    """`tokenAuthorization`, an aks-inference extension (v1 has no such key): what a token service asks of a
    token beyond a valid signature, issuer and expiry. Only with `tokenAuthEnabled: true`. Enforced by the
    router's Envoy: a token without every required role or from another client gets 403, one for another
    audience 401."""

    # Every one must be in the token's `roles` claim (Entra app roles assigned to the caller).
    required_roles: list[Annotated[str, AfterValidator(_app_role)]] = Field(default_factory=list, max_length=MAX_TOKEN_CLAIM_VALUES)
    # The token's azp (v2.0 tokens) or appid (v1.0 tokens) must be one of them; empty: any client.
    allowed_client_ids: list[Annotated[str, AfterValidator(_client_id)]] = Field(default_factory=list, max_length=MAX_TOKEN_CLAIM_VALUES)
    # The token's aud must be this, instead of the stack's auth.audience.
    audience: Annotated[str, AfterValidator(_token_audience)] | None = None


class DeploymentConfig(V1Section):
    """`deploymentconfig.json` for `computeType: AKS`, i.e. `AksWebservice.deploy_configuration(...)`."""

    compute_type: Annotated[str, AfterValidator(_compute_type)]
    auto_scaler: AutoScaler = Field(default_factory=AutoScaler)
    container_resource_requirements: ContainerResourceRequirements = Field(default_factory=ContainerResourceRequirements)
    # v1's docstring says 0, the docs include says 1; 0 is the only default a CPU-only cluster can schedule.
    gpu_cores: GpuCount | None = None
    liveness_probe_requirements: LivenessProbeRequirements = Field(default_factory=LivenessProbeRequirements)
    keys: Keys = Field(default_factory=Keys)
    auth_enabled: bool | None = None
    token_auth_enabled: bool = False
    token_authorization: TokenAuthorization | None = None  # aks-inference extension (see TokenAuthorization)
    app_insights_enabled: bool = False
    scoring_timeout_ms: PositiveInt = DEFAULT_SCORING_TIMEOUT_MS
    max_concurrent_requests_per_container: PositiveInt = 1
    max_queue_wait_ms: PositiveInt = 500
    # aks-inference extension (v1 has no such key): the service time of one request, queueing excluded, that the
    # router assumes until it has measured one; sizes the cold queue (router.spec.PRIOR_SERVICE_TIME_MS when absent).
    expected_service_time_ms: PositiveInt | None = None
    num_replicas: PositiveInt | None = None
    data_collection: DataCollection = Field(default_factory=DataCollection)
    namespace: Namespace | None = None
    compute_target_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, str] = Field(default_factory=dict)
    description: str | None = None

    # ----------------------------------------------------------------- resolved values

    @property
    def autoscale_on(self) -> bool:
        """v1: autoscaling is on unless switched off or a fixed `numReplicas` is given."""
        enabled = self.auto_scaler.autoscale_enabled
        return self.num_replicas is None if enabled is None else enabled

    @property
    def min_replicas(self) -> int:
        if not self.autoscale_on:
            return self.num_replicas or 1
        return self.auto_scaler.min_replicas or DEFAULT_MIN_REPLICAS

    @property
    def max_replicas(self) -> int:
        if not self.autoscale_on:
            return self.num_replicas or 1
        return self.auto_scaler.max_replicas or DEFAULT_MAX_REPLICAS

    @property
    def initial_replicas(self) -> int:
        return self.min_replicas

    @property
    def target_utilization(self) -> float:
        """Target busy fraction (v1 gives a percentage)."""
        return (self.auto_scaler.target_utilization or DEFAULT_TARGET_UTILIZATION) / 100

    @property
    def refresh_seconds(self) -> int:
        return self.auto_scaler.refresh_period_in_seconds or DEFAULT_REFRESH_SECONDS

    @property
    def max_concurrent(self) -> int:
        return self.max_concurrent_requests_per_container

    @property
    def auth_mode(self) -> Literal["key", "token", "none"]:
        if self.token_auth_enabled:
            return "token"
        return "none" if self.auth_enabled is False else "key"

    @property
    def gpu_count(self) -> int:
        return self.gpu_cores or self.container_resource_requirements.gpu or 0

    @property
    def collects_model_data(self) -> bool:
        """v1 `collect_model_data` / `dataCollection.storageEnabled`."""
        return self.data_collection.storage_enabled

    # ----------------------------------------------------------------- v1 JSON

    def to_v1(self, explicit_only: bool = False) -> dict[str, Any]:
        """The `deploymentconfig.json` document (defaults included unless `explicit_only`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=explicit_only)

    def problems(self) -> Iterable[tuple[str, Any, str]]:
        """v1's `validate_configuration()` rules that span fields, as (key, value, problem)."""
        scaler = self.auto_scaler
        if scaler.autoscale_enabled and self.num_replicas is not None:
            yield (
                "numReplicas",
                self.num_replicas,
                "cannot be set while autoScaler.autoscaleEnabled is true (v1: 'autoscale enabled and num_replicas "
                "provided.'); allowed: remove numReplicas, or set autoScaler.autoscaleEnabled to false",
            )
        if scaler.autoscale_enabled is False and self.num_replicas is None:
            yield (
                "numReplicas",
                None,
                "is required when autoScaler.autoscaleEnabled is false (v1: 'autoscale disabled but num_replicas "
                "not provided.'); allowed: an integer > 0",
            )
        if scaler.autoscale_enabled is not True:
            for field in ("min_replicas", "max_replicas", "refresh_period_in_seconds", "target_utilization"):
                value = getattr(scaler, field)
                if value is not None:
                    key = AutoScaler.model_fields[field].alias
                    yield (
                        f"autoScaler.{key}",
                        value,
                        "is set without enabling autoscaling (v1 replica settings need "
                        "autoScaler.autoscaleEnabled: true, explicitly); allowed: add autoScaler.autoscaleEnabled: true, "
                        "or remove it",
                    )
        elif self.min_replicas > self.max_replicas:
            given = "" if scaler.max_replicas else ", the default"
            yield ("autoScaler.minReplicas", scaler.min_replicas, f"must be <= autoScaler.maxReplicas ({self.max_replicas}{given})")
        if self.auth_enabled and self.token_auth_enabled:
            yield (
                "tokenAuthEnabled",
                True,
                "cannot be true together with authEnabled (v1: 'auth_enabled and token_auth_enabled cannot both "
                "be true.'); allowed: set authEnabled to false for token auth",
            )
        resources = self.container_resource_requirements
        if resources.cpu_limit is not None and resources.cpu_limit < resources.cpu:
            yield ("containerResourceRequirements.cpuLimit", resources.cpu_limit, f"must be >= containerResourceRequirements.cpu ({resources.cpu})")
        if resources.memory_in_gb_limit is not None and resources.memory_in_gb_limit < resources.memory_in_gb:
            yield (
                "containerResourceRequirements.memoryInGBLimit",
                resources.memory_in_gb_limit,
                f"must be >= containerResourceRequirements.memoryInGB ({resources.memory_in_gb})",
            )
        if self.gpu_cores is not None and resources.gpu is not None and self.gpu_cores != resources.gpu:
            yield (
                "containerResourceRequirements.gpu",
                resources.gpu,
                f"disagrees with gpuCores ({self.gpu_cores}); allowed: set only gpuCores (the v1 file key)",
            )
        if self.keys.secondary_key and not self.keys.primary_key:
            yield ("keys.secondaryKey", REDACTED, "needs keys.primaryKey too (v1 dropped a lone secondary key)")
        if (self.keys.primary_key or self.keys.secondary_key) and self.auth_mode != "key":
            yield ("keys", REDACTED, f"are only used with key auth, but auth is {self.auth_mode}; allowed: remove keys, or enable authEnabled")
        if self.token_authorization is not None and not self.token_auth_enabled:
            yield (
                "tokenAuthorization",
                self.token_authorization.model_dump(by_alias=True, exclude_defaults=True),
                f"applies to token auth only, but auth is {self.auth_mode}; allowed: set tokenAuthEnabled to true, or remove tokenAuthorization",
            )
        if self.expected_service_time_ms is not None and self.expected_service_time_ms > self.scoring_timeout_ms:
            yield (
                "expectedServiceTimeMs",
                self.expected_service_time_ms,
                f"must be <= scoringTimeoutMs ({self.scoring_timeout_ms}): a request taking longer is cut off with 504 "
                "anyway; allowed: the typical time of one request in milliseconds, from 1 to scoringTimeoutMs",
            )
        if self.liveness_probe_requirements.success_threshold != 1:
            yield (
                "livenessProbeRequirements.successThreshold",
                self.liveness_probe_requirements.success_threshold,
                "must be 1: Kubernetes rejects any other value for a liveness probe",
            )


# --------------------------------------------------------------------------- inferenceconfig.json

# cudaVersion -> the Azure ML base image an `enableGpu` (or `gpuCores` > 0) service builds on: Azure ML's own
# OpenMPI + CUDA + cuDNN images, at a dated release tag (never latest), so the environment tag pins what is
# underneath. Names and tags from the release notes of https://github.com/Azure/AzureML-Containers
# (base/gpu/<image>/release-notes.md, images/<image>/release-notes.md). v1 took 9.0, 9.1 and 10.0; Azure ML
# never published a CUDA 9.1 image, so 9.1 has no entry. docs/images.md has the table.
AZUREML_IMAGES = "mcr.microsoft.com/azureml"
CUDA_BASE_IMAGES: dict[str, str] = {
    "9.0": f"{AZUREML_IMAGES}/openmpi3.1.2-cuda9.0-cudnn7-ubuntu16.04:20210331.v1",
    "10.0": f"{AZUREML_IMAGES}/openmpi3.1.2-cuda10.0-cudnn7-ubuntu18.04:20220401.v1",
    "10.1": f"{AZUREML_IMAGES}/openmpi3.1.2-cuda10.1-cudnn7-ubuntu18.04:20220401.v1",
    "11.6": f"{AZUREML_IMAGES}/openmpi4.1.0-cuda11.6-cudnn8-ubuntu20.04:20241202.v1",
    "11.8": f"{AZUREML_IMAGES}/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:20241202.v1",
}
# Without cudaVersion: the newest, on the CPU default's Ubuntu 22.04 (v1 defaulted to 9.1, which has no image).
DEFAULT_CUDA_VERSION = "11.8"

# An image reference as Docker reads it: [registry[:port]/]path[:tag][@sha256:<64 hex>]
# (grammar of https://github.com/distribution/reference/blob/main/reference.go, digest limited to sha256).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
_IMAGE_REFERENCE = re.compile(rf"^{_DOMAIN}{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$")


def _cuda_version(value: Any) -> Any:
    """v1 files write cudaVersion as a string, but a bare 10.0 is an easy slip: read it the same."""
    return f"{value:.1f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _supported_cuda(value: str) -> str:
    if value not in CUDA_BASE_IMAGES:
        missing = " (v1 took it, but Azure ML never published a CUDA 9.1 base image)" if value == "9.1" else ""
        raise ValueError(f"has no Azure ML CUDA base image{missing}; allowed: {', '.join(CUDA_BASE_IMAGES)} (docs/images.md)")
    return value


def _image_reference(value: str) -> str:
    if not _IMAGE_REFERENCE.match(value):
        digest = " (a digest is @sha256: and 64 lowercase hex digits)" if "@" in value else ""
        raise ValueError(f"is not an image reference{digest}; allowed: [registry/]name[:tag][@sha256:<digest>], "
                         "e.g. mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04@sha256:<digest> to pin it")
    return value


class BaseImageRegistry(V1Section):
    address: str | None = None
    username: str | None = None
    password: str | None = None


class InferenceConfig(V1Section):
    """`inferenceconfig.json`, i.e. `InferenceConfig(...)`. Paths are relative to `sourceDirectory`."""

    entry_script: str
    source_directory: str | None = None
    runtime: Annotated[Literal["python", "spark-py"], BeforeValidator(_lower)] | None = None
    conda_file: str | None = None
    # every v1 example writes extraDockerfileSteps; the 2019 docs table writes extraDockerFileSteps
    extra_dockerfile_steps: str | None = Field(default=None, alias="extraDockerfileSteps")
    extra_docker_file_steps: str | None = Field(default=None, alias="extraDockerFileSteps")
    enable_gpu: bool | None = None
    base_image: Annotated[str, AfterValidator(_image_reference)] | None = None
    base_image_registry: BaseImageRegistry | None = None
    cuda_version: Annotated[str, BeforeValidator(_cuda_version), AfterValidator(_supported_cuda)] | None = None
    environment: dict[str, Any] | None = None
    description: str | None = None

    @property
    def dockerfile_steps(self) -> str | None:
        return self.extra_dockerfile_steps or self.extra_docker_file_steps

    def problems(self, folder: Path) -> Iterable[tuple[str, Any, str]]:
        """v1's InferenceConfig checks, with files resolved against `folder` (the service folder)."""
        if self.extra_dockerfile_steps and self.extra_docker_file_steps:
            yield ("extraDockerFileSteps", self.extra_docker_file_steps, "is the same setting as extraDockerfileSteps; give only one")
        if self.environment is not None:
            for field in ("runtime", "conda_file", "extra_dockerfile_steps", "extra_docker_file_steps", "enable_gpu", "cuda_version", "base_image"):
                if getattr(self, field) is not None:
                    key = InferenceConfig.model_fields[field].alias
                    yield (key, getattr(self, field), "cannot be combined with environment (v1 rule); allowed: put it into the environment, or drop environment")
        if self.runtime == "spark-py":
            yield ("runtime", self.runtime, "spark-py is not supported (there is no Spark runtime in the model image); allowed: python")
        source = folder / (self.source_directory or ".")
        if self.source_directory is not None and not is_inside(source, folder):
            yield ("sourceDirectory", self.source_directory, f"{OUTSIDE} (the service folder {folder})")
            return
        if self.source_directory is not None and not source.is_dir():
            yield ("sourceDirectory", self.source_directory, f"is not a directory (looked for {source})")
            return
        steps_key = "extraDockerfileSteps" if self.extra_dockerfile_steps else "extraDockerFileSteps"
        outside = [(key, given) for key, given in (("entryScript", self.entry_script), ("condaFile", self.conda_file), (steps_key, self.dockerfile_steps))
                   if given is not None and not is_inside(source / given, source)]
        for key, given in outside:
            yield (key, given, f"{OUTSIDE} (the source directory {source})")
        if outside:
            return
        yield from _entry_script_problems(source, self.entry_script)
        if self.conda_file is not None:
            yield from _conda_problems(source / self.conda_file, self.conda_file)
        if self.dockerfile_steps and not (source / self.dockerfile_steps).is_file():
            yield (steps_key, self.dockerfile_steps, f"file not found (looked for {source / self.dockerfile_steps})")


OUTSIDE = "must stay inside its folder (no absolute path, no '..' leaving it, no link out of it): the image holds only the service folder"


def is_inside(path: Path, folder: Path) -> bool:
    """Whether `path`, links resolved, lies in `folder`."""
    return path.resolve().is_relative_to(folder.resolve())


def _entry_script_problems(source: Path, entry_script: str) -> Iterable[tuple[str, Any, str]]:
    """v1: exists, ends in .py, basename an identifier and no keyword, parses; and it defines init() and run()."""
    key = "entryScript"
    path = source / entry_script
    stem = Path(entry_script).stem
    if not entry_script.endswith(".py"):
        yield (key, entry_script, "must be a Python file ending in .py")
        return
    if not stem.isidentifier() or keyword.iskeyword(stem):
        yield (key, entry_script, "its file name must be a Python identifier and not a keyword (it is imported as a module)")
    if not path.is_file():
        yield (key, entry_script, f"file not found (looked for {path})")
        return
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        yield (key, entry_script, f"does not parse as Python{f' (line {line})' if line else ''}: {getattr(exc, 'msg', exc)}")
        return
    defined = _top_level_names(tree)
    missing = [name for name in ("init", "run") if name not in defined]
    if missing:
        yield (key, entry_script, f"must define {' and '.join(f'{name}()' for name in missing)} at module level (the v1 entry-script contract)")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _conda_problems(path: Path, given: str) -> Iterable[tuple[str, Any, str]]:
    if not path.is_file():
        yield ("condaFile", given, f"file not found (looked for {path})")
        return
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        yield ("condaFile", given, f"is not valid YAML: {exc}".replace("\n", " "))
        return
    if not isinstance(spec, dict) or not isinstance(spec.get("dependencies"), list):
        yield ("condaFile", given, "must be a conda environment file with a 'dependencies' list")


# --------------------------------------------------------------------------- validation helpers


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides win; objects merge key by key; a null override removes the key (back to the v1 default)."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _paths(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths.add(path)
        if isinstance(value, Mapping):
            paths |= _paths(value, path)
    return paths


def _without(data: Any, locations: Iterable[tuple[Any, ...]]) -> Any:
    """A copy of `data` with the values at `locations` removed (to check the rest)."""
    pruned = json.loads(json.dumps(data, default=str))
    for location in locations:
        node = pruned
        for part in location[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(location[-1] if location else None, None)
    return pruned


def _validated(model: type[BaseModel], data: Any, key: str) -> tuple[Any, list[ConfigIssue]]:
    """(model, []) when valid; else (the model without the bad values, if that parses, for the cross-field
    rules to still run; issues)."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        try:
            partial = model.model_validate(_without(data, [tuple(e["loc"]) for e in exc.errors()]))
        except ValidationError:
            partial = None
        issues = []
        for issue in issues_from(exc, key, secret=False, root=model):
            leaf = issue.key.rsplit(".", 1)[-1]
            if leaf in _MOVED_KEYS and issue.problem.startswith("unknown key"):
                issue = ConfigIssue(issue.key, issue.value, f"unknown key (v1 ignored it): {_MOVED_KEYS[leaf]}")
            elif "keys" in issue.key.split(".") and not issue.problem.startswith("unknown key"):
                issue = ConfigIssue(issue.key, REDACTED, issue.problem)
            issues.append(issue)
        return partial, issues


def _with_rules(issues: list[ConfigIssue], key: str, rules: Iterable[tuple[str, Any, str]]) -> list[ConfigIssue]:
    """`issues` plus cross-field findings, except where a bad value of the same object would skew the rule
    (it ran with that value removed, i.e. with its default)."""
    reported = {issue.key for issue in issues}
    skewed = {k.rsplit(".", 1)[0] for k in reported if "." in k.removeprefix(key).lstrip(".")}
    findings = []
    for rule_key, value, problem in rules:
        full = join_key(key, rule_key)
        if full not in reported and ("." not in rule_key or full.rsplit(".", 1)[0] not in skewed):
            findings.append(ConfigIssue(full, value, problem))
    return issues + findings


def parse_deployment(
    data: Any, key: str = "deployment", overrides: Mapping[str, Any] | None = None, source: str | None = None
) -> tuple[DeploymentConfig | None, list[ConfigIssue]]:
    """Validate a v1 deployment document (merged with `overrides`), returning every issue.

    Issues about values that came from `source` (the file) rather than `overrides` say so."""
    if not isinstance(data, Mapping):
        return None, [ConfigIssue(key, data, "must be a JSON object of v1 deployment settings")]
    if overrides is not None and not isinstance(overrides, Mapping):
        return None, [ConfigIssue(key, overrides, "must be an object of v1 deployment settings (deploymentconfig.json keys)")]
    merged = deep_merge(data, overrides or {})
    if "computeType" not in merged:
        return None, [
            ConfigIssue(join_key(key, "computeType"), None, "is required (v1: 'Need to specify computeType in --deploy-config-file'); allowed: AKS")
        ]
    config, issues = _validated(DeploymentConfig, merged, key)
    if config is not None:
        issues = _with_rules(issues, key, config.problems())
    if source:
        from_overrides = _paths(overrides or {})
        issues = [
            issue if issue.key.removeprefix(key).lstrip(".") in from_overrides else ConfigIssue(issue.key, issue.value, f"{issue.problem} [set in {source}]")
            for issue in issues
        ]
    return (config if not issues else None), issues


def parse_inference(data: Any, folder: Path, key: str = "inferenceConfig") -> tuple[InferenceConfig | None, list[ConfigIssue]]:
    """Validate a v1 inference document and its files (resolved against `folder`)."""
    if not isinstance(data, Mapping):
        return None, [ConfigIssue(key, data, "must be a JSON object of v1 inference settings")]
    config, issues = _validated(InferenceConfig, data, key)
    if config is not None:
        issues = _with_rules(issues, key, config.problems(folder))
    return (config if not issues else None), issues