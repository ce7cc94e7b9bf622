"""`aksinf import-v1`: the stack-config entry for an existing Azure ML v1 AKS deployment.

Reads the v1 `deploymentconfig.json` and `inferenceconfig.json`, validates both
with the same rules as the stack (all problems at once), and prints an
`aks-inference:models` item on stdout, ready to paste under `config:` in
`Pulumi.<stack>.yaml`. The entry carries every setting the v1 file set
explicitly, so the stack alone describes the deployment. Notes (where the model
files go, how to store keys as secrets) go to stderr, so stdout stays pure YAML.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from contract import v1_files as v1
from contract.errors import ConfigIssue
from contract.service import DEFAULT_MODEL_DIR, INFERENCE_FILE
from contract.stack import NAMESPACE, PROJECT_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy-config", required=True, type=Path, metavar="FILE", help="v1 deploymentconfig.json (or .yml)")
    parser.add_argument("--inference-config", required=True, type=Path, metavar="FILE", help="v1 inferenceconfig.json (or .yml)")
    parser.add_argument("--name", required=True, help="service name (the <name> in /api/v1/service/<name>/score)")
    parser.add_argument("--path", type=Path, help="service folder for the stack entry (default: the inference config's folder)")


def _load(path: Path, flag: str) -> tuple[Any, list[str]]:
    """A v1 file as data; v1 read JSON and also YAML with the same keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{flag} {path}: cannot be read: {exc.strerror or exc}"]
    try:
        if path.suffix.lower() in (".yml", ".yaml"):
            return yaml.safe_load(text), []
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [f"{flag} {path}: is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
    except yaml.YAMLError as exc:
        return None, [f"{flag} {path}: is not valid YAML: {exc}".replace("\n", " ")]


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
    if errors or deployment is None:
        print(f"aksinf import-v1: {len(errors)} problem(s):", file=sys.stderr)
        for line in errors:
            print(f"  - {line}", file=sys.stderr)
        return 2
    print(f"# {NAMESPACE}:models entry for {args.name!r}, imported from {args.deploy_config} and {args.inference_config}")
    print(yaml.safe_dump({f"{NAMESPACE}:models": [entry(deployment, args.name, folder)]}, sort_keys=False, allow_unicode=True), end="")
    _notes(args, deployment, folder)
    return 0


def _notes(args: argparse.Namespace, deployment: v1.DeploymentConfig, folder: Path) -> None:
    """What the user still has to do by hand, on stderr."""
    inference_file = folder / INFERENCE_FILE
    if not (inference_file.exists() and os.path.samefile(inference_file, args.inference_config)):
        print(f"note: copy {args.inference_config} to {inference_file} (the service folder's inference config)", file=sys.stderr)
    if not (folder / DEFAULT_MODEL_DIR).is_dir():
        print(
            f"note: put the model files into {folder / DEFAULT_MODEL_DIR} (mounted as AZUREML_MODEL_DIR, as in v1)",
            file=sys.stderr,
        )
    for field, flag in (("primary_key", "primaryKey"), ("secondary_key", "secondaryKey")):
        if getattr(deployment.keys, field):
            print(
                f"note: keys.{flag} is not printed; store it as a secret: pulumi config set --secret --path "
                f"'{NAMESPACE}:models[<index>].deployment.keys.{flag}' <value from {args.deploy_config}>",
                file=sys.stderr,
            )
