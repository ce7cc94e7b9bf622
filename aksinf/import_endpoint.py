"""`aksinf import-endpoint`: the stack-config entry for an Azure ML v1 `AksEndpoint`.

Reads the JSON that azureml-core's `AksEndpoint.serialize()` produced (`azureml/core/webservice/aks.py`:
the endpoint's `name`, `authEnabled`, `aadAuthEnabled` and a `versions` object of version name ->
`AksWebservice.serialize()`, whose `autoScaler`, `containerResourceRequirements`,
`livenessProbeRequirements`, `dataCollection`, `maxConcurrentRequestsPerContainer`, `maxQueueWaitMs`,
`numReplicas`, `scoringTimeoutMs`, `appInsightsEnabled`, `isDefault`, `trafficPercentile` and `versionType`
("Control" / "Treatment") carry the deployment), and prints an `aks-inference:models` item with
`versions` (contract/endpoints.py) on stdout. The entry is checked with the stack's own rules, all
problems at once. What a description cannot carry (the entry scripts, environments and model files of
each version) is listed as notes on stderr, so stdout stays pure YAML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aksinf.import_v1 import _stack_path
from contract.endpoints import endpoint_issues
from contract.errors import ConfigIssue, issues_from
from contract.service import read_document
from contract.stack import NAMESPACE, ModelEntry
from contract.v1_files import parse_deployment

# Version keys of AksWebservice.serialize() that are deploymentconfig.json keys as they stand.
DEPLOYMENT_KEYS = ("autoScaler", "containerResourceRequirements", "livenessProbeRequirements", "maxConcurrentRequestsPerContainer",
                   "maxQueueWaitMs", "numReplicas", "scoringTimeoutMs", "appInsightsEnabled", "description", "tags")
# The endpoint's own auth (AksEndpoint.serialize(): authEnabled, aadAuthEnabled) -> deploymentconfig.json keys.
ENDPOINT_AUTH = {"authEnabled": "authEnabled", "aadAuthEnabled": "tokenAuthEnabled"}
VERSION_TYPES = {"Control": "control", "Treatment": "treatment"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", required=True, type=Path, metavar="FILE", help="JSON written from AksEndpoint.serialize()")
    parser.add_argument("--path", required=True, type=Path, help="service folder the versions share (entry script, inferenceconfig.json, model/)")
    parser.add_argument("--version-path", action="append", default=[], metavar="VERSION=FOLDER",
                        help="another service folder for one version (repeatable)")


def _without_nulls(value: Any) -> Any:
    """serialize() writes every unset setting as null; null means 'the v1 default' here too, so leave it out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None and v != {}}
    return value


def _version(name: str, payload: Any, folder: str | None) -> tuple[dict[str, Any], list[ConfigIssue]]:
    key = f"versions.{name}"
    if not isinstance(payload, dict):
        return {}, [ConfigIssue(key, payload, "must be the object AksWebservice.serialize() wrote")]
    issues = []
    deployment = _without_nulls({k: payload.get(k) for k in DEPLOYMENT_KEYS})
    storage = (payload.get("dataCollection") or {}).get("storageEnabled")
    if storage is not None:
        deployment["dataCollection"] = {"storageEnabled": storage}
    version: dict[str, Any] = {"name": name}
    if folder:
        version["path"] = folder
    if deployment:
        version["deployment"] = deployment
    if payload.get("isDefault"):
        version["isDefault"] = True
    else:
        percent = payload.get("trafficPercentile")
        if isinstance(percent, (int, float)) and not isinstance(percent, bool) and percent != int(percent):
            issues.append(ConfigIssue(f"{key}.trafficPercentile", percent, "is not a whole percent; allowed: 0-100 in steps of 1 (round it)"))
        elif percent is not None:
            version["trafficPercentile"] = int(percent) if isinstance(percent, float) else percent
    version_type = payload.get("versionType")
    if version_type is not None:
        version["versionType"] = VERSION_TYPES.get(version_type, version_type)
    return version, issues


def translate(described: Any, folder: str, version_paths: dict[str, str]) -> tuple[dict[str, Any] | None, list[ConfigIssue]]:
    """(the `aks-inference:models` item, []) or (None, every issue)."""
    if not isinstance(described, dict) or not isinstance(described.get("versions"), dict) or not described.get("name"):
        return None, [ConfigIssue("", type(described).__name__, "must be AksEndpoint.serialize() JSON: an object with name and versions")]
    issues: list[ConfigIssue] = []
    entry: dict[str, Any] = {"name": described["name"], "path": folder}
    auth = {ours: described[theirs] for theirs, ours in ENDPOINT_AUTH.items() if described.get(theirs) is not None}
    if auth:
        entry["deployment"] = auth
    versions = []
    for name, payload in described["versions"].items():
        version, found = _version(name, payload, version_paths.pop(name, None))
        versions.append(version)
        issues += found
        _, found = parse_deployment({"computeType": "AKS"}, f"versions.{name}.deployment", {**auth, **version.get("deployment", {})})
        issues += found
    entry["versions"] = versions
    issues += [ConfigIssue("--version-path", name, f"names no version of the endpoint; allowed: {', '.join(described['versions'])}") for name in version_paths]
    if issues:
        return None, issues
    try:
        found = list(endpoint_issues(ModelEntry.model_validate(entry), 0))
    except ValidationError as exc:
        found = issues_from(exc, "models[0]", secret=False, root=ModelEntry)
    return (None, [_described_key(issue, versions) for issue in found]) if found else (entry, [])


def _described_key(issue: ConfigIssue, versions: list[dict[str, Any]]) -> ConfigIssue:
    """An entry issue keyed as in the description: `models[0].versions[1].x` -> `versions.<name>.x`."""
    key = issue.key.removeprefix("models[0]").lstrip(".")
    for j, version in enumerate(versions):
        key = key.replace(f"versions[{j}]", f"versions.{version['name']}")
    return ConfigIssue(key or "name", issue.value, issue.problem)


def _version_paths(pairs: list[str]) -> tuple[dict[str, str], list[str]]:
    paths, errors = {}, []
    for pair in pairs:
        name, equals, folder = pair.partition("=")
        if not (equals and name and folder):
            errors.append(f"--version-path {pair!r}: allowed: VERSION=FOLDER")
        elif not Path(folder).is_dir():
            errors.append(f"--version-path {pair!r}: {folder} is not a directory")
        else:
            paths[name] = _stack_path(Path(folder))
    return paths, errors


def run(args: argparse.Namespace) -> int:
    described, read_issues = read_document(args.endpoint, "--endpoint")
    errors = [f"--endpoint {args.endpoint}: {issue.problem}" for issue in read_issues]
    if not args.path.is_dir():
        errors.append(f"--path {args.path}: is not a directory; allowed: the service folder (entry script, inferenceconfig.json, model/)")
    paths, path_errors = _version_paths(args.version_path)
    errors += path_errors
    entry = None
    if not errors:
        entry, issues = translate(described, _stack_path(args.path), paths)
        errors += [f"--endpoint {args.endpoint}: {issue}" for issue in issues]
    if errors or entry is None:
        print(f"aksinf import-endpoint: {len(errors)} problem(s):", file=sys.stderr)
        for line in errors:
            print(f"  - {line}", file=sys.stderr)
        return 2
    print(f"# {NAMESPACE}:models entry for the AksEndpoint {entry['name']!r}, imported from {args.endpoint}")
    print(yaml.safe_dump({f"{NAMESPACE}:models": [entry]}, sort_keys=False, allow_unicode=True), end="")
    _notes(described)
    return 0


def _notes(described: dict[str, Any]) -> None:
    """What the description cannot carry, on stderr."""
    for name, payload in described["versions"].items():
        models = [f"{m.get('name')}:{m.get('version')}" for m in (payload.get("modelDetails") or []) if isinstance(m, dict)]
        if models:
            print(f"note: version {name!r} served {', '.join(models)}: put them into its folder's model/<name>/<version>/", file=sys.stderr)
        if payload.get("environmentDetails"):
            print(f"note: version {name!r} had its own environment: its folder needs the matching inferenceconfig.json and conda file",
                  file=sys.stderr)
    print(f"note: the endpoint's keys are not in the description; set them as secrets: pulumi config set --secret --path "
          f"'{NAMESPACE}:models[<index>].deployment.keys.primaryKey' <key>", file=sys.stderr)
