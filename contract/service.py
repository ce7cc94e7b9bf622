"""A v1 service folder, loaded once: `deploymentconfig.json` + `inferenceconfig.json` + the model folder.

`inspect_service` reads and validates a folder and never raises: it returns what parsed and every
problem, so the stack loader can run its cross-checks on a valid deployment even when the rest of
the folder has problems. `load_service` is the same, raising `ServiceConfigError` when anything is
wrong. Each v1 document is read by `read_document`, once per load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import limits
from contract.errors import ConfigError, ConfigIssue, join_key
from contract.v1_files import (
    DeploymentConfig,
    InferenceConfig,
    check_service_name,
    is_inside,
    parse_deployment,
    parse_inference,
)

DEPLOYMENT_FILE = "deploymentconfig.json"
INFERENCE_FILE = "inferenceconfig.json"
DEFAULT_MODEL_DIR = "model"
DEFAULT_NAMESPACE = "models"
MAX_MODELS = 1000


@dataclass(frozen=True)
class ModelService:
    """One v1 service, validated: what the router, the actuators and the image build need.

    Deployment settings are read from `deployment` (v1's names, resolved defaults included);
    this class adds only what the folder itself decides."""

    name: str
    folder: Path
    deployment: DeploymentConfig
    inference: InferenceConfig
    model_dir: Path

    @property
    def source_dir(self) -> Path:
        return (self.folder / (self.inference.source_directory or ".")).resolve()

    @property
    def entry_script(self) -> Path:
        return self.source_dir / self.inference.entry_script

    @property
    def conda_file(self) -> Path | None:
        return self.source_dir / self.inference.conda_file if self.inference.conda_file else None

    @property
    def namespace(self) -> str:
        return self.deployment.namespace or DEFAULT_NAMESPACE


@dataclass(frozen=True)
class ServiceFolder:
    """What `inspect_service` found: the service when every part is valid, the merged deployment when
    that part is, and every problem."""

    service: ModelService | None
    deployment: DeploymentConfig | None
    issues: tuple[ConfigIssue, ...]


class ServiceConfigError(ConfigError):
    """Every problem of one service folder, reported together."""

    def __init__(self, name: str, issues: list[ConfigIssue]):
        ConfigError.__init__(self, issues)
        lines = "\n".join(f"  - {issue}" for issue in issues)
        self.args = (f"{len(issues)} problem(s) in model service {name!r}:\n{lines}",)


def shown(path: Path) -> str:
    """A path as the user wrote it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_document(path: Path, key: str) -> tuple[Any, list[ConfigIssue]]:
    """The one reader of v1 documents: (parsed JSON, []) or (None, the problem keyed `key`)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        document = limits.TOO_DEEP
    except FileNotFoundError:
        return None, [ConfigIssue(key, shown(path), "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(key, shown(path), f"cannot be read: {exc}")]
    except json.JSONDecodeError as exc:
        return None, [ConfigIssue(key, shown(path), f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
    if limits.too_deep(document):
        return None, [ConfigIssue(key, shown(path), f"is nested deeper than {limits.MAX_NESTING} levels; allowed: a v1 document")]
    return document, []


def _model_dir_problems(model_dir: Path, key: str, given: str) -> list[ConfigIssue]:
    if not model_dir.is_dir():
        return [ConfigIssue(key, given, f"model directory not found (looked for {shown(model_dir)}); allowed: a folder with the model files")]
    models = [entry for entry in os.listdir(model_dir) if not entry.startswith(".")]
    if len(models) > MAX_MODELS:
        return [ConfigIssue(key, given, f"holds {len(models)} models; allowed: at most {MAX_MODELS} per service (v1 limit)")]
    return []


def _escaping_links(folder: Path, key: str) -> list[ConfigIssue]:
    """Symbolic links whose target lies outside the service folder: the build would copy host files."""
    issues = []
    root = folder.resolve()
    for directory, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = Path(directory) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                issues.append(ConfigIssue(
                    key, shown(path),
                    f"is a symbolic link to {path.resolve()}, outside the service folder; allowed: regular files "
                    "inside the folder (the image build copies only those)",
                ))
    return issues


def _folder_deployment(
    folder: Path, overrides: Mapping[str, Any] | None, key: str
) -> tuple[DeploymentConfig | None, list[ConfigIssue]]:
    deployment_file = folder / DEPLOYMENT_FILE
    if not deployment_file.exists():
        return parse_deployment({"computeType": "AKS"}, join_key(key, "deployment"), overrides)
    data, issues = read_document(deployment_file, join_key(key, "path"))
    if issues:
        return None, issues
    return parse_deployment(data, join_key(key, "deployment"), overrides, shown(deployment_file))


def inspect_service(
    path: str | os.PathLike[str],
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    model_dir: str = DEFAULT_MODEL_DIR,
    key: str = "",
) -> ServiceFolder:
    """Read and validate a service folder once; never raises.

    `overrides` are v1 deployment keys deep-merged over the folder's deploymentconfig.json
    (which may be absent: then the overrides are the whole deployment, computeType implied).
    `key` prefixes every issue key, e.g. `models[0]`."""
    folder = Path(path)
    issues: list[ConfigIssue] = []
    try:
        check_service_name(name)
    except ValueError as exc:
        issues.append(ConfigIssue(join_key(key, "name"), name, str(exc)))
    if not folder.is_dir():
        issues.append(ConfigIssue(join_key(key, "path"), str(path), "is not a directory; allowed: a service folder with inferenceconfig.json"))
        return ServiceFolder(None, None, tuple(issues))
    deployment, found = _folder_deployment(folder, overrides, key)
    issues += found
    inference_data, read_issues = read_document(folder / INFERENCE_FILE, join_key(key, "path"))
    issues += read_issues
    inference = None
    if not read_issues:
        inference, found = parse_inference(inference_data, folder, join_key(key, "inferenceConfig"))
        issues += found
    issues += _escaping_links(folder, join_key(key, "path"))
    models = folder / model_dir
    if not is_inside(models, folder):
        issues.append(ConfigIssue(join_key(key, "modelDir"), model_dir, f"must stay inside the service folder {folder} (no absolute path, no '..' leaving it)"))
        return ServiceFolder(None, deployment, tuple(issues))
    issues += _model_dir_problems(models, join_key(key, "modelDir") if model_dir != DEFAULT_MODEL_DIR else join_key(key, "path"), model_dir)
    if issues or deployment is None or inference is None:
        return ServiceFolder(None, deployment, tuple(issues))
    service = ModelService(name=name, folder=folder.resolve(), deployment=deployment, inference=inference, model_dir=models.resolve())
    return ServiceFolder(service, deployment, ())


def load_service(
    path: str | os.PathLike[str],
    name: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    model_dir: str = DEFAULT_MODEL_DIR,
    key: str = "",
) -> ModelService:
    """Load and validate a service folder; raise ServiceConfigError listing every problem."""
    found = inspect_service(path, name, overrides, model_dir=model_dir, key=key)
    if found.service is None:
        raise ServiceConfigError(name, list(found.issues))
    return found.service
