"""`aksinf import-v1`: the stack-config entry for an existing Azure ML v1 AKS deployment.

Reads the v1 `deploymentconfig.json` and `inferenceconfig.json` (or their YAML
forms, `.yml` / `.yaml`, as v1 took them), validates both with the same reader
and rules as the stack (all problems at once), and prints an
`aks-inference:models` item on stdout, ready to paste under `config:` in
`Pulumi.<stack>.yaml`. The entry carries every setting the v1 file set
explicitly, so the stack alone describes the deployment. Notes (where the model
files go, how to store keys as secrets) go to stderr, so stdout stays pure YAML.

`--model NAME:VERSION=PATH` (repeatable) lays a registered model out in the service folder as v1 did:
`model/<NAME>/<VERSION>/<basename of PATH>` (PATH a file or a folder, as registered), so
`Model.get_model_path(NAME)` and `AZUREML_MODEL_DIR` resolve as on v1 (contract.service.model_layout).
Every spec is checked before anything is copied, and nothing already there is overwritten.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from contract import v1_files as v1
from contract.errors import ConfigIssue
from contract.service import (
    DEFAULT_MODEL_DIR,
    INFERENCE_FILE,
    INFERENCE_FILES,
    MODEL_NAME,
    YAML_SUFFIXES,
    model_layout,
    read_document,
)
from contract.stack import NAMESPACE, PROJECT_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy-config", required=True, type=Path, metavar="FILE", help="v1 deploymentconfig.json (or .yml)")
    parser.add_argument("--inference-config", required=True, type=Path, metavar="FILE", help="v1 inferenceconfig.json (or .yml)")
    parser.add_argument("--name", required=True, help="service name (the <name> in /api/v1/service/<name>/score)")
    parser.add_argument("--path", type=Path, help="service folder for the stack entry (default: the inference config's folder)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME:VERSION=PATH",
                        help="a registered model (file or folder) to lay out as v1 did: model/NAME/VERSION/<basename>; repeatable")


def _load(path: Path, flag: str) -> tuple[Any, list[str]]:
    """A v1 file as data, read as the service folder reads it: JSON, or YAML for `.yml` / `.yaml`."""
    data, issues = read_document(path, flag)
    return data, [f"{flag} {path}: {issue.problem}" for issue in issues]


def _stack_path(folder: Path) -> str:
    """Relative to the project root when inside it (how stack files refer to services), else absolute."""
    resolved = folder.resolve()
    try:
        return resolved.relative_to(PROJECT_ROOT).as_posix() or "."
    except ValueError:
        return str(resolved)


def _describe(flag: str, path: Path, issues: list[ConfigIssue]) -> list[str]:
    return [f"{flag} {path}: {issue}" for issue in issues]


def entry(deployment: v1.DeploymentConfig, name: str, folder: Path) -> dict[str, Any]:
    """The `aks-inference:models` item: explicit v1 settings, minus the implied computeType and the secret keys."""
    overrides = deployment.to_v1(explicit_only=True)
    overrides.pop("computeType", None)
    overrides.pop("keys", None)
    item: dict[str, Any] = {"name": name, "path": _stack_path(folder)}
    if overrides:
        item["deployment"] = overrides
    return item


def model_copies(specs: list[str], folder: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(source, target) for every `NAME:VERSION=PATH` spec, under `folder`/model/NAME/VERSION/, and every problem:
    a malformed spec, a name or version v1 would not have registered, a missing PATH, a spec given twice, a
    version folder already there, or a model folder that holds a flat (unnamed) model. Pure: copies nothing."""
    copies: list[tuple[Path, Path]] = []
    problems: list[str] = []
    model_dir = folder / DEFAULT_MODEL_DIR
    if specs and model_dir.is_dir():
        registered, layout_issues = model_layout(model_dir, "--model")
        problems += [str(issue) for issue in layout_issues]
        if not registered and not layout_issues and any(not entry.startswith(".") for entry in os.listdir(model_dir)):
            problems.append(f"--model: {model_dir} holds a flat (unnamed) model; allowed: an empty or v1-layout model folder "
                            "(model/<name>/<version>/), so move the flat files out first")
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        name_version, equals, path = spec.partition("=")
        name, colon, version = name_version.rpartition(":")
        if not (equals and colon and name and version and path):
            problems.append(f"--model {spec!r}: must be NAME:VERSION=PATH, e.g. sklearn_regression_model.pkl:3=./outputs/model.pkl")
            continue
        bad = []
        if not MODEL_NAME.match(name):
            bad.append(f"name {name!r} is not a registered model name (1-255 letters, digits, '.', '_' or '-', starting with a letter or digit)")
        if not (version.isascii() and version.isdigit() and str(int(version)) == version and int(version) >= 1):
            bad.append(f"version {version!r} is not a registered model version (an integer from 1, without leading zeros)")
        source = Path(path)
        if not source.exists():
            bad.append(f"path {path} not found; allowed: the registered model's file or folder")
        target = model_dir / name / version
        if (name, version) in seen:
            bad.append(f"{name}:{version} is given twice")
        elif target.exists():
            bad.append(f"{target} already exists; remove it first (nothing is overwritten)")
        seen.add((name, version))
        if bad:
            problems += [f"--model {spec!r}: {problem}" for problem in bad]
        else:
            copies.append((source, target / source.resolve().name))
    return copies, problems


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def run(args: argparse.Namespace) -> int:
    errors: list[str] = []
    try:
        v1.check_service_name(args.name)
    except ValueError as exc:
        errors.append(f"--name {args.name!r}: {exc}")
    deploy_data, deploy_errors = _load(args.deploy_config, "--deploy-config")
    inference_data, inference_errors = _load(args.inference_config, "--inference-config")
    errors += deploy_errors + inference_errors
    deployment = None
    if not deploy_errors:
        deployment, issues = v1.parse_deployment(deploy_data, key="")
        errors += _describe("--deploy-config", args.deploy_config, issues)
    if not inference_errors:
        _, issues = v1.parse_inference(inference_data, args.inference_config.parent, key="")
        errors += _describe("--inference-config", args.inference_config, issues)
    folder = args.path or args.inference_config.parent
    if args.path is not None and not folder.is_dir():
        errors.append(f"--path {folder}: is not a directory; allowed: the service folder (entry script, inferenceconfig.json, model/)")
    copies, model_errors = model_copies(args.model, folder)
    errors += model_errors
    if errors or deployment is None:
        print(f"aksinf import-v1: {len(errors)} problem(s):", file=sys.stderr)
        for line in errors:
            print(f"  - {line}", file=sys.stderr)
        return 2
    for source, target in copies:
        _copy(source, target)
        print(f"note: laid out {source} as {target} (v1's azureml-models/<name>/<version>/)", file=sys.stderr)
    print(f"# {NAMESPACE}:models entry for {args.name!r}, imported from {args.deploy_config} and {args.inference_config}")
    print(yaml.safe_dump({f"{NAMESPACE}:models": [entry(deployment, args.name, folder)]}, sort_keys=False, allow_unicode=True), end="")
    _notes(args, deployment, folder)
    return 0


def _notes(args: argparse.Namespace, deployment: v1.DeploymentConfig, folder: Path) -> None:
    """What the user still has to do by hand, on stderr."""
    given = args.inference_config
    present = [folder / name for name in INFERENCE_FILES if (folder / name).is_file()]
    if not any(os.path.samefile(path, given) for path in present):
        # keep the format: a YAML file is read as YAML under a .yml/.yaml name, never as JSON
        suffix = given.suffix.lower() if given.suffix.lower() in YAML_SUFFIXES else ".json"
        target = folder / f"{INFERENCE_FILE.rsplit('.', 1)[0]}{suffix}"
        others = [path for path in present if path != target]
        also = f", and remove {', '.join(str(path) for path in others)} (one inference config per folder)" if others else ""
        print(f"note: copy {given} to {target} (the service folder's inference config){also}", file=sys.stderr)
    if not (folder / DEFAULT_MODEL_DIR).is_dir():
        print(
            f"note: put the models into {folder / DEFAULT_MODEL_DIR} as v1 deployed them: <name>/<version>/<file or folder> "
            "per registered model (Model.get_model_path and AZUREML_MODEL_DIR work as in v1), or the files directly for one unnamed model",
            file=sys.stderr,
        )
    for field, flag in (("primary_key", "primaryKey"), ("secondary_key", "secondaryKey")):
        if getattr(deployment.keys, field):
            print(
                f"note: keys.{flag} is not printed; store it as a secret: pulumi config set --secret --path "
                f"'{NAMESPACE}:models[<index>].deployment.keys.{flag}' <value from {args.deploy_config}>",
                file=sys.stderr,
            )
