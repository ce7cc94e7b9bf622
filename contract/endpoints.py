"""Versioned endpoints: Azure ML v1's `AksEndpoint` as keys of an `aks-inference:models` entry.

An entry with `versions` is an endpoint: its name, scoring URI and auth stay the entry's, and each
version is a service of its own (its own folder, or the entry's, with deployment overrides merged over
the entry's `deployment`). The rules are v1's (azureml-core `azureml/core/webservice/aks.py`:
`AksEndpoint.create_version` / `update_version` / `_validate_update`, and
https://learn.microsoft.com/azure/machine-learning/v1/how-to-deploy-azure-kubernetes-service#deploy-models-to-aks-using-controlled-rollout-preview):
at most six versions; `trafficPercentile` 0-100 per version; the traffic the others leave goes to the one
default version (`isDefault`); a version is `control` or `treatment` (v1's `is_control_version_type`,
at most one control: making one control turned the others into treatments); version names follow the
service-name rule (v1 ran `webservice_name_validation` on them). Added here: `mirrorPercentile` (a
shadow copy of that share of requests, never answering the client) and an optional `rollout` policy
(automated canary analysis, decided by `router/canary.py`).

This module holds the models and every rule, as keyed issues reported all at once; `contract.loading`
runs `CHECKS` with the other cross-section checks. Nothing here imports Pulumi or the router.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field

from contract.errors import REDACTED, ConfigIssue, Section
from contract.service import ServiceFolder, inspect_service
from contract.v1_files import check_service_name, deep_merge

if TYPE_CHECKING:
    from contract.stack import ModelEntry

MAX_VERSIONS = 6  # v1: "You can deploy up to six versions behind a single endpoint" (page in the module docstring)
PERCENT = 100
VersionType = Literal["control", "treatment"]
# The endpoint's auth is the endpoint's (one scoring URI, one set of keys): versions may not change it.
ENDPOINT_ONLY_DEPLOYMENT_KEYS = ("authEnabled", "tokenAuthEnabled", "keys")
# Not a key: what the loader made of every version folder (parsed alongside `services`).
VERSION_FOLDERS = "versionFolders"


class EndpointVersion(Section):
    """One version: a v1 service (v1's `create_version` arguments) and its share of the endpoint's traffic."""

    name: Annotated[str, AfterValidator(check_service_name)]
    # Another service folder; unset: the entry's `path`.
    path: str | None = None
    model_dir: str | None = None
    # v1 deployment keys merged over the entry's `deployment` (which is merged over the folder's file).
    deployment: dict[str, Any] = Field(default_factory=dict)
    # Whole percents: Envoy weighted clusters and mirror fractions take integers. None on the default: the rest.
    traffic_percentile: int | None = Field(default=None, ge=0, le=PERCENT)
    is_default: bool = False
    version_type: VersionType = "treatment"
    mirror_percentile: int = Field(default=0, ge=0, le=PERCENT)

    @property
    def is_shadow(self) -> bool:
        return self.mirror_percentile > 0


def _steps(value: list[int]) -> list[int]:
    if not value:
        raise ValueError("must list at least one traffic percentage for the treatment, e.g. [10, 25, 50, 100]")
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError("must be strictly increasing percentages, e.g. [10, 25, 50, 100]")
    return value


class RolloutPolicy(Section):
    """Automated canary analysis: the treatment's traffic walks `steps`, one healthy analysis window per step;
    a window with too many 5xx or a p99 too far above the control's sends all traffic back to the control."""

    steps: Annotated[list[Annotated[int, Field(ge=1, le=PERCENT)]], AfterValidator(_steps)]
    analysis_window_seconds: int = Field(default=300, ge=10, le=86_400)
    max_server_error_rate: float = Field(default=0.01, ge=0, le=1)  # 5xx / requests of the treatment
    max_p99_latency_ratio: float = Field(default=1.5, ge=1, le=100)  # treatment p99 / control p99
    min_requests: int = Field(default=100, ge=1, le=10_000_000)  # per window, before the treatment is judged


# --------------------------------------------------------------------------- derived values


def version_key(index: int, version: int) -> str:
    return f"models[{index}].versions[{version}]"


def canary(entry: ModelEntry) -> EndpointVersion | None:
    """The version a rollout moves: the one treatment that answers clients (not a shadow)."""
    treatments = [v for v in entry.versions if v.version_type == "treatment" and not v.is_shadow]
    return treatments[0] if len(treatments) == 1 else None


# --------------------------------------------------------------------------- rules


def endpoint_issues(entry: ModelEntry, index: int) -> Iterable[ConfigIssue]:
    """Every rule of one entry's `versions` and `rollout` (the folders are `version_folders`' concern)."""
    key = f"models[{index}]"
    versions = entry.versions
    if not versions:
        if entry.rollout is not None:
            yield ConfigIssue(f"{key}.rollout", entry.rollout.steps, "needs versions (a control and a treatment); allowed: remove rollout or add versions")
        return
    if len(versions) > MAX_VERSIONS:
        yield ConfigIssue(f"{key}.versions", len(versions), f"has {len(versions)} versions; allowed: at most {MAX_VERSIONS} (v1's AksEndpoint limit)")
    for j, version in enumerate(versions):
        vkey = version_key(index, j)
        if version.name == entry.name:
            yield ConfigIssue(f"{vkey}.name", version.name, "must differ from the endpoint's name (models[].name names the endpoint)")
        for moved in ENDPOINT_ONLY_DEPLOYMENT_KEYS:
            if moved in version.deployment:
                shown = REDACTED if moved == "keys" else version.deployment[moved]
                yield ConfigIssue(f"{vkey}.deployment.{moved}", shown, f"belongs to the endpoint (one scoring URI, one auth); allowed: set it in {key}.deployment")
        if version.is_shadow and (version.is_default or version.traffic_percentile):
            yield ConfigIssue(f"{vkey}.mirrorPercentile", version.mirror_percentile,
                              "makes this version a shadow, which never answers a client; allowed: trafficPercentile 0 (or unset) and isDefault false")
    yield from _traffic_issues(entry, key)
    yield from _rollout_issues(entry, key)


def _traffic_issues(entry: ModelEntry, key: str) -> Iterable[ConfigIssue]:
    versions = entry.versions
    defaults = [j for j, v in enumerate(versions) if v.is_default]
    if not defaults:
        yield ConfigIssue(f"{key}.versions", [v.name for v in versions],
                          "need exactly one version with isDefault: true (it takes the traffic the others leave)")
    for j in defaults[1:]:
        yield ConfigIssue(f"{key}.versions[{j}].isDefault", True, f"{versions[defaults[0]].name!r} is already the default; allowed: exactly one default")
    total = sum(v.traffic_percentile or 0 for v in versions if not v.is_default)
    if total > PERCENT:
        yield ConfigIssue(f"{key}.versions", total, f"trafficPercentile of the non-default versions sum to {total}; allowed: at most {PERCENT}")
    elif len(defaults) == 1:
        default = versions[defaults[0]]
        if default.traffic_percentile is not None and default.traffic_percentile != PERCENT - total:
            yield ConfigIssue(f"{key}.versions[{defaults[0]}].trafficPercentile", default.traffic_percentile,
                              f"the default takes the rest ({PERCENT - total}); allowed: leave it out, or {PERCENT - total}")
    controls = [j for j, v in enumerate(versions) if v.version_type == "control"]
    for j in controls[1:]:
        yield ConfigIssue(f"{key}.versions[{j}].versionType", "control",
                          f"{versions[controls[0]].name!r} is already the control; allowed: at most one control (v1 made the others treatments)")


def _rollout_issues(entry: ModelEntry, key: str) -> Iterable[ConfigIssue]:
    rollout = entry.rollout
    if rollout is None:
        return
    control = [v for v in entry.versions if v.version_type == "control"]
    if not (control and control[0].is_default):
        yield ConfigIssue(f"{key}.rollout", [v.name for v in control], "needs a control version that is the default (a rollback sends the treatment's traffic back to it)")
    moving = canary(entry)
    if moving is None:
        treatments = [v.name for v in entry.versions if v.version_type == "treatment" and not v.is_shadow]
        yield ConfigIssue(f"{key}.rollout", treatments, "needs exactly one treatment version that is not a shadow (the canary it moves)")
        return
    j = entry.versions.index(moving)
    if (moving.traffic_percentile or 0) != rollout.steps[0]:
        yield ConfigIssue(f"{key}.versions[{j}].trafficPercentile", moving.traffic_percentile,
                          f"is where the rollout starts; allowed: {rollout.steps[0]} (rollout.steps[0])")


def _models_issues(models: list[ModelEntry]) -> Iterable[ConfigIssue]:
    """Per-entry rules, and version names unique across the stack (each names Kubernetes objects and a cluster)."""
    owners = {entry.name: f"models[{i}]" for i, entry in enumerate(models)}
    for i, entry in enumerate(models):
        yield from endpoint_issues(entry, i)
        for j, version in enumerate(entry.versions):
            owner = owners.get(version.name)
            if owner is not None and owner != f"models[{i}]":
                yield ConfigIssue(f"{version_key(i, j)}.name", version.name, f"must be unique: {owner} already uses it (a version names its own Kubernetes objects); allowed: a name no model or version uses")
            elif owner is not None:
                continue  # the endpoint's own name: endpoint_issues said so
            owners.setdefault(version.name, version_key(i, j))


VersionFolders = tuple[tuple[ServiceFolder, ...], ...]


def version_folders(models: list[ModelEntry]) -> VersionFolders:
    """Every version's service folder, read once (one tuple per entry, empty for a plain service)."""
    found = []
    for i, entry in enumerate(models):
        folders = []
        for j, version in enumerate(entry.versions):
            # the version's overrides merged over the entry's, which inspect_service merges over the folder's file
            folders.append(inspect_service(entry.version_folder(version), version.name, deep_merge(entry.deployment, version.deployment),
                                           model_dir=version.model_dir or entry.model_dir, key=version_key(i, j)))
        found.append(tuple(folders))
    return tuple(found)


def _version_folder_issues(models: list[ModelEntry], folders: VersionFolders) -> Iterable[ConfigIssue]:
    """Problems of the versions' folders; a version that changes nothing of its entry's folder repeats the
    entry's own problems, which are reported once, under the entry."""
    for entry, per_entry in zip(models, folders):
        for version, folder in zip(entry.versions, per_entry):
            inherits = version.path is None and version.model_dir is None and not version.deployment
            if not inherits:
                yield from folder.issues


# (sections needed, check): run by contract.loading with contract.checks.CROSS_CHECKS.
CHECKS: list[tuple[tuple[str, ...], Callable[..., Iterable[ConfigIssue]]]] = [
    (("models",), _models_issues),
    (("models", VERSION_FOLDERS), _version_folder_issues),
]


def loaded_versions(models: list[ModelEntry], folders: VersionFolders) -> Mapping[str, tuple]:
    """Endpoint name -> its versions' ModelServices (in `versions` order), once every folder is valid."""
    return {entry.name: tuple(f.service for f in per_entry) for entry, per_entry in zip(models, folders) if per_entry}
