"""The offline plan: run the program under mocks, write `plans/<stack>.json` and manifests,
run the policy pack, and print a preview-like diff against the previous plan.

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

from components.replacement import FORCE_NEW
from contract.errors import REDACTED
from policies.pack import LEVELS
from review.analyzer import analyze
from review.offline import OfflineRun, run_program


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
        "protect": r.protect, "inputs": _redact(_mask_paths(r.inputs, r.secret_paths), secrets),
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


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{prefix}.{key}" if prefix else key
            keys += _changed_keys(old.get(key), new.get(key), sub) if key in old and key in new else [sub]
        return keys
    return [] if old == new else [prefix]


def diff(previous: Mapping | None, current: Mapping) -> list[tuple[str, str, list[str]]]:
    """(`+`/`~`/`+-`/`-`, urn, changed input paths) for every custom resource that differs."""
    before = {r["urn"]: r for r in (previous or {}).get("resources", []) if r["custom"]}
    after = {r["urn"]: r for r in current["resources"] if r["custom"]}
    changes = []
    for urn in sorted(set(before) | set(after)):
        if urn not in before:
            changes.append(("+", urn, []))
        elif urn not in after:
            changes.append(("-", urn, []))
        else:
            keys = _changed_keys(before[urn]["inputs"], after[urn]["inputs"])
            force_new = FORCE_NEW.get(after[urn]["type"], ())
            if any(key == f or key.startswith(f + ".") for key in keys for f in force_new):
                changes.append(("+-", urn, keys))
            elif keys:
                changes.append(("~", urn, keys))
    return changes


def policy_config(previous: Mapping | None, run: OfflineRun, overrides: Mapping[str, Any]) -> dict:
    """Overrides as in `--policy-pack-config`, plus what only the plan knows: the previous
    network profiles of protected clusters, the registry login server and the egress allowlist."""
    config = {name: ({"enforcementLevel": value} if isinstance(value, str) else dict(value))
              for name, value in overrides.items()}
    previous_profiles = {r["name"]: r["inputs"].get("networkProfile") or {}
                         for r in (previous or {}).get("resources", [])
                         if r["type"] == "azure-native:containerservice:ManagedCluster" and r["protect"]}
    if previous_profiles:
        config.setdefault("protected-cluster-force-new-change", {})["previous"] = previous_profiles
    allowlist = sorted({rule["destination"] for rule in run.outputs.get("egressAllowlist") or []})
    if allowlist:
        config.setdefault("udr-egress-allowlist-covered", {})["allowlist"] = allowlist
    registries = run.of_type("azure-native:containerregistry:Registry")
    if len(registries) == 1 and registries[0].outputs.get("loginServer"):
        config.setdefault("images-from-acr-pinned", {})["registry"] = registries[0].outputs["loginServer"]
    return config


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def main(stack: str, out_dir: Path, *, config: Mapping[str, Any] | None = None,
         policy_overrides: Mapping[str, Any] | None = None, out=sys.stdout) -> int:
    """Plan `stack` into `out_dir`; non-zero on a program error or any mandatory violation."""
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
    for mark, urn, keys in changes:
        print(f"  {mark:<2} {urn.split('::')[2].rsplit('$', 1)[-1]:<58} {_short(urn)}" + (f"  [{', '.join(keys)}]" if keys else ""), file=out)
    counts = {mark: sum(1 for c in changes if c[0] == mark) for mark in ("+", "~", "+-", "-")}
    print("Changes: " + (", ".join(f"{n} {m}" for m, n in counts.items() if n) or "none"), file=out)
    for level in LEVELS:
        print(f"Policies {level}: {len(diagnostics[level])} violation(s)", file=out)
        for d in diagnostics[level]:
            print(f"  [{d.policy}] {_short(d.urn) or '(stack)'}: {d.message.splitlines()[-1]}", file=out)
    return 1 if diagnostics["mandatory"] else 0
