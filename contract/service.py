"""A v1 service folder, loaded once: `deploymentconfig.json` + `inferenceconfig.json` + the model folder.

`inspect_service` reads and validates a folder and never raises: it returns what parsed and every
problem, so the stack loader can run its cross-checks on a valid deployment even when the rest of
the folder has problems. `load_service` is the same, raising `ServiceConfigError` when anything is
wrong. Each v1 document is read by `read_document`, once per load; v1 accepted JSON and YAML
(`inferenceconfig.yml`, `deploymentconfig.yaml`, ...), and so does the folder.

The model folder holds models one of two ways (`model_layout`):

- **v1 layout**: `model/<name>/<version>/<one file or folder>`, one folder per registered model and
  one integer folder per version, exactly as v1 laid models out under `azureml-models/` (what
  `Model.get_model_path(name, version)` searches). `ModelService.registered_models` lists them.
- **flat**: anything else, e.g. the model files directly in `model/` (one unnamed model).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

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
YAML_SUFFIXES = (".yml", ".yaml")
# Every name a folder's v1 file may have: JSON first (what `aksinf import-v1` and the docs write), then YAML.
DEPLOYMENT_FILES = (DEPLOYMENT_FILE, "deploymentconfig.yml", "deploymentconfig.yaml")
INFERENCE_FILES = (INFERENCE_FILE, "inferenceconfig.yml", "inferenceconfig.yaml")
DEFAULT_MODEL_DIR = "model"
DEFAULT_NAMESPACE = "models"
MAX_MODELS = 1000
# A registered model's name, as v1's model registry took it (a folder name and a blob path segment).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class RegisteredModel(NamedTuple):
    """One registered model of a v1-layout model folder: `model/<name>/<version>/`."""

    name: str
    version: int


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
    # v1 layout: every (name, version) under model_dir, sorted; () for a flat model folder.
    registered_models: tuple[RegisteredModel, ...] = ()

    @property
    def model_layout(self) -> str:
        """`v1` (model/<name>/<version>/...) or `flat` (one unnamed model)."""
        return "v1" if self.registered_models else "flat"

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


class _V1YamlLoader(yaml.SafeLoader):
    """YAML as v1 files use it: plain mappings, lists and scalars. Aliases are refused: a few bytes of
    nested aliases expand into billions of nodes once anything walks the document."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a v1 file", event.start_mark)
        return super().compose_node(parent, index)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() in YAML_SUFFIXES:
        return yaml.load(text, Loader=_V1YamlLoader)  # noqa: S506 - a SafeLoader subclass
    return json.loads(text)


def read_document(path: Path, key: str) -> tuple[Any, list[ConfigIssue]]:
    """The one reader of v1 documents: (parsed JSON or YAML, []) or (None, the problem keyed `key`).

    `.yml` / `.yaml` files are YAML (v1's CLI took both), anything else JSON."""
    try:
        document = _parse(path, path.read_text(encoding="utf-8"))
    except RecursionError:
        document = limits.TOO_DEEP
    except FileNotFoundError:
        return None, [ConfigIssue(key, shown(path), "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(key, shown(path), f"cannot be read: {exc}")]
    except json.JSONDecodeError as exc:
        return None, [ConfigIssue(key, shown(path), f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [ConfigIssue(key, shown(path), f"is not valid YAML: {problem}{at}")]
    except (ValueError, TypeError) as exc:  # a YAML scalar PyYAML cannot construct, e.g. the date 2024-13-45
        return None, [ConfigIssue(key, shown(path), f"is not valid YAML: {exc}")]
    if limits.too_deep(document):
        return None, [ConfigIssue(key, shown(path), f"is nested deeper than {limits.MAX_NESTING} levels; allowed: a v1 document")]
    return document, []


def find_document(folder: Path, names: tuple[str, ...], key: str) -> tuple[Path | None, list[ConfigIssue]]:
    """The folder's one file among `names` (e.g. inferenceconfig.json / .yml / .yaml): (path, []),
    (None, []) when there is none, or (None, the problem) when there are several."""
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) > 1:
        listed = ", ".join(path.name for path in found)
        return None, [ConfigIssue(key, shown(folder), f"holds {listed}: one folder has one {names[0].split('.')[0]} file; allowed: keep one of them")]
    return (found[0] if found else None), []


def _looks_like_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def _is_version(name: str) -> bool:
    """An integer as v1 wrote it (`str(version)`): `7`, not `07`, which `get_model_path(name, 7)` never finds."""
    return _looks_like_version(name) and str(int(name)) == name


def _looks_like_v1(model_dir: Path, top: list[str]) -> bool:
    """Every visible top-level entry is a folder, and some of them hold an integer-named folder."""
    if not top or not all((model_dir / entry).is_dir() for entry in top):
        return False
    return any(
        _looks_like_version(child) and (model_dir / entry / child).is_dir()
        for entry in top
        for child in os.listdir(model_dir / entry)
    )


def model_layout(model_dir: Path, key: str) -> tuple[tuple[RegisteredModel, ...], list[ConfigIssue]]:
    """The registered models of a v1-layout model folder (sorted), () for a flat one, and the problems
    of a v1 layout that v1 itself would have refused at scoring time.

    v1 layout: every visible top-level entry is a folder (a registered model's name) and some of them
    hold integer-named folders (its versions). Then, as v1's `Model.get_model_path` requires, every
    entry of a name folder must be an integer version folder and every version folder must hold exactly
    one file or folder. Anything else is flat. Hidden top-level entries (`.gitkeep`) are ignored."""
    try:
        top = sorted(entry for entry in os.listdir(model_dir) if not entry.startswith("."))
        if not _looks_like_v1(model_dir, top):
            return (), []
        return _v1_models(model_dir, top, key)
    except OSError as exc:
        return (), [ConfigIssue(key, shown(Path(exc.filename or model_dir)), f"cannot be read: {exc.strerror or exc}")]


def _v1_models(model_dir: Path, top: list[str], key: str) -> tuple[tuple[RegisteredModel, ...], list[ConfigIssue]]:
    issues: list[ConfigIssue] = []
    models: list[RegisteredModel] = []
    layout = "v1 layout: model/<name>/<version>/<one file or folder>, as v1's azureml-models/"
    for name in top:
        folder = model_dir / name
        if not MODEL_NAME.match(name):
            issues.append(ConfigIssue(key, shown(folder), f"is not a registered model name: 1-255 letters, digits, '.', '_' or '-', starting with a letter or digit ({layout})"))
            continue
        versions = sorted(os.listdir(folder))
        if not versions:
            issues.append(ConfigIssue(key, shown(folder), f"holds no version folder; allowed: model/{name}/<version>/ with an integer version ({layout})"))
        for version in versions:
            path = folder / version
            if not (_is_version(version) and path.is_dir()):
                issues.append(ConfigIssue(
                    key, shown(path),
                    f"is not an integer version folder (v1 reads every entry of a model's folder as its version number); "
                    f"allowed: model/{name}/<version>/ with versions 1, 2, ... without leading zeros ({layout})",
                ))
                continue
            entries = sorted(os.listdir(path))
            if len(entries) != 1:
                issues.append(ConfigIssue(
                    key, shown(path),
                    f"holds {len(entries)} entries {entries}; allowed: exactly one file or folder per version folder "
                    f"(v1: 'Dir {shown(path)} can contain only 1 file or folder. Found {entries}')",
                ))
                continue
            models.append(RegisteredModel(name, int(version)))
    return tuple(sorted(models)), issues


def _model_dir_problems(model_dir: Path, key: str, given: str) -> tuple[tuple[RegisteredModel, ...], list[ConfigIssue]]:
    if not model_dir.is_dir():
        return (), [ConfigIssue(key, given, f"model directory not found (looked for {shown(model_dir)}); allowed: a folder with the model files")]
    registered, issues = model_layout(model_dir, key)
    if issues:
        return (), issues
    if registered:
        if len(registered) > MAX_MODELS:
            return (), [ConfigIssue(key, given, f"holds {len(registered)} registered model versions; allowed: at most {MAX_MODELS} per service (v1 limit)")]
        return registered, []
    models = [entry for entry in os.listdir(model_dir) if not entry.startswith(".")]
    if len(models) > MAX_MODELS:
        return (), [ConfigIssue(key, given, f"holds {len(models)} models; allowed: at most {MAX_MODELS} per service (v1 limit)")]
    return (), []


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
    deployment_file, issues = find_document(folder, DEPLOYMENT_FILES, join_key(key, "path"))
    if issues:
        return None, issues
    if deployment_file is None:
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
        issues.append(ConfigIssue(join_key(key, "path"), str(path), "is not a directory; allowed: a service folder with inferenceconfig.json (or .yml)"))
        return ServiceFolder(None, None, tuple(issues))
    deployment, found = _folder_deployment(folder, overrides, key)
    issues += found
    inference_file, read_issues = find_document(folder, INFERENCE_FILES, join_key(key, "path"))
    if not read_issues:
        inference_data, read_issues = read_document(inference_file or folder / INFERENCE_FILE, join_key(key, "path"))
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
    registered, found = _model_dir_problems(models, join_key(key, "modelDir") if model_dir != DEFAULT_MODEL_DIR else join_key(key, "path"), model_dir)
    issues += found
    if issues or deployment is None or inference is None:
        return ServiceFolder(None, deployment, tuple(issues))
    service = ModelService(
        name=name, folder=folder.resolve(), deployment=deployment, inference=inference, model_dir=models.resolve(),
        registered_models=registered,
    )
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
