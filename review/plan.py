"""The offline plan: run the program under mocks, write `plans/<stack>.json` and manifests,
run the policy pack, and print a preview-like diff against the previous plan.

The diff tells what Pulumi and Azure will do: paths under a resource's `ignore_changes` are not changes (raising
a pool's minCount shows only minCount), list items with a `name` are compared by name
(`agentPoolProfiles[system].vmSize`), and a change Azure cannot make in place is marked from the one table of
`components.replacement`: `+-` when Pulumi replaces that resource alone, `!!` with the migration recipe when it
needs a rebuild or AKS rejects it.

Warnings (a service with `enableGpu` but no `gpuCores`, serving.images.image_warnings) are printed after the
changes; they never fail the plan.

No credentials, no Pulumi CLI. Secret values never reach the output: every input the engine
marked secret is replaced by `[secret]`, and any string still containing a known secret
value (e.g. a generated key copied elsewhere) is redacted too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.replacement import (
    AGENT_POOL,
    CLUSTER,
    IMMUTABLE,
    Immutable,
    matching,
    value_at,
)
from contract.errors import REDACTED
from contract.loading import LOCATION_KEY, load_stack, read_stack_file
from contract.stack import NAMESPACE
from policies.pack import LEVELS
from review.analyzer import analyze
from review.offline import OfflineRun, run_program
from serving.images import image_warnings


def _path_value(value: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _secret_values(run: OfflineRun) -> set[str]:
    """Every secret string the run produced: secret inputs, generated passwords, secret outputs."""
    found: set[str] = set()

    def strings(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 4:
            found.add(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    for r in run.resources:
        for path in r.secret_paths:
            strings(r.inputs if path == "." else _path_value(r.inputs, path.split("[")[0]))
        if r.type == "random:index/randomPassword:RandomPassword":
            strings(r.outputs.get("result"))
    for key in run.secret_outputs:
        strings(run.outputs.get(key))
    return found


def _redact(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, str):
        return REDACTED if any(secret in value for secret in secrets) else value
    if isinstance(value, Mapping):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    return value


def _mask_paths(inputs: dict, paths: list[str]) -> dict:
    inputs = json.loads(json.dumps(inputs))
    for path in paths:
        if path == ".":
            return {"": REDACTED}
        *parents, last = path.split("[")[0].split(".")
        holder = _path_value(inputs, ".".join(parents)) if parents else inputs
        if isinstance(holder, dict) and last in holder:
            holder[last] = REDACTED
    return inputs


def plan_document(run: OfflineRun) -> dict:
    """Every resource with its redacted inputs, in registration order."""
    secrets = _secret_values(run)
    resources = [{
        "urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent or None, "custom": r.custom,
        "protect": r.protect, "ignoreChanges": r.ignore_changes, "inputs": _redact(_mask_paths(r.inputs, r.secret_paths), secrets),
    } for r in run.resources]
    return {"resources": resources}


def _manifest(resource: Mapping) -> tuple[str, dict]:
    group_version, kind = resource["type"].split(":")[1].rsplit(":", 1)[0], resource["type"].rsplit(":", 1)[1]
    api_version = group_version.removeprefix("core/")
    inputs = {k: v for k, v in resource["inputs"].items() if k not in ("apiVersion", "kind")}
    metadata = inputs.get("metadata") or {}
    file_name = f"{metadata.get('namespace') or '_cluster'}--{kind}--{metadata.get('name') or resource['name']}.yaml"
    return file_name, {"apiVersion": api_version, "kind": kind, **inputs}


def write_plan(stack: str, document: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stack}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    manifests = out_dir / stack / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    for old in manifests.glob("*.yaml"):
        old.unlink()
    for resource in document["resources"]:
        if resource["type"].startswith("kubernetes:") and resource["custom"]:
            name, manifest = _manifest(resource)
            (manifests / name).write_text(yaml.safe_dump(manifest, sort_keys=True))
    return path


def _by_name(value: Any) -> dict | None:
    """A list of mappings with distinct names, keyed by name; None for any other value."""
    if not isinstance(value, list) or not all(isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in value):
        return None
    named = {item["name"]: item for item in value}
    return named if len(named) == len(value) else None


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{prefix}.{key}" if prefix else key
            keys += _changed_keys(old.get(key), new.get(key), sub) if key in old and key in new else [sub]
        return keys
    old_items, new_items = _by_name(old), _by_name(new)
    if old_items is not None and new_items is not None and old:
        keys = []
        for name in sorted(set(old_items) | set(new_items)):
            sub = f"{prefix}[{name}]"
            keys += _changed_keys(old_items[name], new_items[name], sub) if name in old_items and name in new_items else [sub]
        return keys
    return [] if old == new else [prefix]


def _ignored(key: str, ignore_changes: list[str]) -> bool:
    return any(key == path or key.startswith((path + ".", path + "[")) for path in ignore_changes)


def _mark(resource_type: str, keys: list[str]) -> tuple[str, list[Immutable]]:
    hits = matching(resource_type, keys)
    if any(entry.recipe for entry in hits):
        return "!!", [entry for entry in hits if entry.recipe]
    if any(entry.replaces for entry in hits):
        return "+-", []
    return "~", []


Change = tuple[str, str, list[str], list[Immutable]]


def diff(previous: Mapping | None, current: Mapping) -> list[Change]:
    """(`+`/`~`/`+-`/`!!`/`-`, urn, changed input paths, the table entries behind a `!!`) for every custom resource
    that differs; paths under the resource's ignore_changes are no change."""
    before = {r["urn"]: r for r in (previous or {}).get("resources", []) if r["custom"]}
    after = {r["urn"]: r for r in current["resources"] if r["custom"]}
    changes = []
    for urn in sorted(set(before) | set(after)):
        if urn not in before:
            changes.append(("+", urn, [], []))
        elif urn not in after:
            changes.append(("-", urn, [], []))
        else:
            ignore = after[urn].get("ignoreChanges") or []
            keys = [key for key in _changed_keys(before[urn]["inputs"], after[urn]["inputs"]) if not _ignored(key, ignore)]
            if keys:
                mark, entries = _mark(after[urn]["type"], keys)
                changes.append((mark, urn, keys, entries))
    return changes


def _protected_previous(previous: Mapping | None) -> dict[str, dict[str, Any]]:
    """{resource name: {table path: previous value}} for protected clusters and the pools beside them."""
    resources = (previous or {}).get("resources", [])
    protected = [r for r in resources if r["type"] == CLUSTER and r["protect"]]
    parents = {r["parent"] for r in protected}
    mine = protected + [r for r in resources if r["type"] == AGENT_POOL and r["parent"] in parents]
    return {r["name"]: {entry.path: value_at(r["inputs"], entry.path) for entry in IMMUTABLE[r["type"]] if entry.recipe} for r in mine}


def policy_config(previous: Mapping | None, run: OfflineRun, overrides: Mapping[str, Any]) -> dict:
    """Overrides as in `--policy-pack-config`, plus what only the plan knows: the previous values of the
    rebuilding inputs of protected clusters and their pools, the registry login server and the egress allowlist."""
    config = {name: ({"enforcementLevel": value} if isinstance(value, str) else dict(value))
              for name, value in overrides.items()}
    previous_values = _protected_previous(previous)
    if previous_values:
        config.setdefault("protected-cluster-force-new-change", {})["previous"] = previous_values
    allowlist = sorted({rule["destination"] for rule in run.outputs.get("egressAllowlist") or []})
    if allowlist:
        config.setdefault("udr-egress-allowlist-covered", {})["allowlist"] = allowlist
    registries = run.of_type("azure-native:containerregistry:Registry")
    if len(registries) == 1 and registries[0].outputs.get("loginServer"):
        config.setdefault("images-from-acr-pinned", {})["registry"] = registries[0].outputs["loginServer"]
    return config


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def warnings_of(stack: str, config: Mapping[str, Any] | None) -> list[str]:
    """What builds but is probably not meant (serving.images.image_warnings) for every service of the stack."""
    raw = dict(read_stack_file(stack) if config is None else config)
    prefix = f"{NAMESPACE}:"
    values = {key.removeprefix(prefix): value for key, value in raw.items() if key.startswith(prefix)}
    return [warning for service in load_stack(values, raw.get(LOCATION_KEY)).services for warning in image_warnings(service)]


def main(stack: str, out_dir: Path, *, config: Mapping[str, Any] | None = None,
         policy_overrides: Mapping[str, Any] | None = None, out=None) -> int:
    """Plan `stack` into `out_dir` (report to `out`, default the current stdout); non-zero on a program error
    or any mandatory violation."""
    out = out or sys.stdout
    run = run_program(stack, config)
    if run.error is not None:
        print(f"program failed: {run.error}", file=out)
        return 1
    previous_path = out_dir / f"{stack}.json"
    previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
    document = plan_document(run)
    changes = diff(previous, document)
    diagnostics = analyze(run.resources, policy_config(previous, run, policy_overrides or {}))
    write_plan(stack, document, out_dir)
    custom = sum(1 for r in run.resources if r.custom)
    print(f"Plan for stack {stack}: {custom} resources" + ("" if previous else " (no previous plan)"), file=out)
    for mark, urn, keys, entries in changes:
        print(f"  {mark:<2} {urn.split('::')[2].rsplit('$', 1)[-1]:<58} {_short(urn)}" + (f"  [{', '.join(keys)}]" if keys else ""), file=out)
        for recipe in dict.fromkeys(entry.recipe for entry in entries):
            print(f"      recipe for {', '.join(e.path for e in entries if e.recipe == recipe)}: Azure cannot change this in place; {recipe}", file=out)
    counts = {mark: sum(1 for c in changes if c[0] == mark) for mark in ("+", "~", "+-", "!!", "-")}
    print("Changes: " + (", ".join(f"{n} {m}" for m, n in counts.items() if n) or "none"), file=out)
    for warning in warnings_of(stack, config):
        print(f"Warning: {warning}", file=out)
    for level in LEVELS:
        print(f"Policies {level}: {len(diagnostics[level])} violation(s)", file=out)
        for d in diagnostics[level]:
            print(f"  [{d.policy}] {_short(d.urn) or '(stack)'}: {d.message.splitlines()[-1]}", file=out)
    return 1 if diagnostics["mandatory"] else 0
