"""The offline plan: run the program under mocks, write `plans/<stack>.json` and manifests,
run the policy pack, and print a preview-like diff against the previous plan.

The diff tells what Pulumi and Azure will do: paths under a resource's `ignore_changes` are not changes (raising
a pool's minCount shows only minCount), list items with a `name` are compared by name
(`agentPoolProfiles[system].vmSize`), and a change Azure cannot make in place is marked from the one table of
`components.replacement`: `+-` when Pulumi replaces that resource alone, `!!` with the migration recipe when it
needs a rebuild or AKS rejects it.

Warnings (a service with `enableGpu` but no `gpuCores`, serving.images.image_warnings) are printed after the
changes; they never fail the plan.

Versioned endpoints: the plan prints each endpoint's configured split (what `pulumi up` writes on the endpoint
Service) apart from the live one, which the router owns (a canary step or a rollback, kept in its ConfigMap
`aks-inference-router-state`, never in Pulumi state). `read_live_state` reads that document, as
`kubectl get configmap aks-inference-router-state -n aks-inference -o jsonpath='{.data.state\\.json}'` prints it,
strictly: a document it cannot read is a keyed error, never a guess.

No credentials, no Pulumi CLI. Secret values never reach the output: every input the engine
marked secret is replaced by `[secret]`, and any string still containing a known secret
value (e.g. a generated key copied elsewhere) is redacted too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.model_manifests import endpoint_metadata
from components.replacement import (
    AGENT_POOL,
    CLUSTER,
    IMMUTABLE,
    Immutable,
    matching,
    value_at,
)
from contract.endpoints import PERCENT
from contract.errors import REDACTED, ConfigError, ConfigIssue
from contract.loading import LOCATION_KEY, LoadedStack, load_stack, read_stack_file
from contract.service import ModelService
from contract.stack import NAMESPACE, ModelEntry, StackConfig
from policies.pack import LEVELS
from review.analyzer import analyze
from review.offline import OfflineRun, run_program
from router.discovery import ROUTER_NAMESPACE, discover_endpoints
from serving.endpoints import endpoint_traffic
from serving.images import image_warnings

# The router's own store of live splits (router-owned: Pulumi never declares its contents).
ROUTER_STATE_CONFIGMAP = "aks-inference-router-state"
ROUTER_STATE_KEY = "state.json"


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


def _loaded(stack: str, config: Mapping[str, Any] | None) -> LoadedStack:
    raw = dict(read_stack_file(stack) if config is None else config)
    prefix = f"{NAMESPACE}:"
    values = {key.removeprefix(prefix): value for key, value in raw.items() if key.startswith(prefix)}
    return load_stack(values, raw.get(LOCATION_KEY))


def warnings_of(loaded: LoadedStack) -> list[str]:
    """What builds but is probably not meant (serving.images.image_warnings) for every service of the stack."""
    services = [*loaded.services, *(v for versions in loaded.versions.values() for v in versions)]
    return [warning for service in services for warning in image_warnings(service)]


@dataclass(frozen=True)
class LiveTraffic:
    """One endpoint's entry of the router's state document (`traffic["<namespace>/<endpoint>"]`)."""

    split: dict[str, int]  # version -> percent of client requests, as the router applies it now
    revision: str = ""  # the configuration it was decided for (the router drops it when that changes)
    phase: str = ""
    step: int | None = None
    cause: str = ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _live_entry(key: str, entry: Any) -> tuple[LiveTraffic | None, list[ConfigIssue]]:
    where = f"traffic[{key}]"
    if "/" not in key:
        return None, [ConfigIssue(where, key, "must be keyed <namespace>/<endpoint>")]
    if not isinstance(entry, Mapping):
        return None, [ConfigIssue(where, entry, "must be an object with split, revision, phase, step and cause")]
    issues = []
    split = entry.get("split")
    if not isinstance(split, Mapping) or not all(_is_int(v) and 0 <= v <= PERCENT for v in split.values()):
        issues.append(ConfigIssue(f"{where}.split", split, f"must map each version to a whole percent 0-{PERCENT}"))
    for name, wanted in (("revision", str), ("phase", str), ("cause", str)):
        if entry.get(name) is not None and not isinstance(entry[name], wanted):
            issues.append(ConfigIssue(f"{where}.{name}", entry[name], "must be a string"))
    if entry.get("step") is not None and not _is_int(entry["step"]):
        issues.append(ConfigIssue(f"{where}.step", entry["step"], "must be a whole number"))
    if issues:
        return None, issues
    return LiveTraffic(dict(split), entry.get("revision") or "", entry.get("phase") or "", entry.get("step"), entry.get("cause") or ""), []


def read_live_state(path: Path) -> dict[str, LiveTraffic]:
    """`traffic` of the router's state document at `path`: "<namespace>/<endpoint>" -> its live split.
    ConfigError naming every problem when the file is missing, not JSON or not of that shape."""
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([ConfigIssue("live-state", str(path), f"cannot be read: {error}")]) from None
    except (ValueError, RecursionError) as error:
        raise ConfigError([ConfigIssue("live-state", str(path), f"is not JSON ({error}); expected the {ROUTER_STATE_KEY} of ConfigMap {ROUTER_STATE_CONFIGMAP}")]) from None
    traffic = document.get("traffic", {}) if isinstance(document, dict) else None
    if not isinstance(traffic, dict):
        raise ConfigError([ConfigIssue("live-state", str(path), 'must be a JSON object {"traffic": {"<namespace>/<endpoint>": {"split": {...}, ...}}, ...}')])
    found, issues = {}, []
    for key, entry in traffic.items():
        live, problems = _live_entry(key, entry)
        issues += problems
        if live is not None:
            found[key] = live
    if issues:
        raise ConfigError(issues)
    return found


def _split(shares: Mapping[str, int]) -> str:
    return ", ".join(f"{version} {share} %" for version, share in shares.items())


def _configured_revision(service: ModelService, entry: ModelEntry, config: StackConfig) -> str:
    """The revision the router computes for the endpoint Service the program writes for `entry` (read back by
    `router.discovery` itself): a live split of another revision is stale, and the router drops it."""
    [read] = discover_endpoints([{"metadata": endpoint_metadata(service, entry, config)}], [], [])
    return read.revision


def endpoint_lines(loaded: LoadedStack, live: Mapping[str, LiveTraffic] | None) -> list[str]:
    """Per endpoint, the configured split and (given the router's state) the live one beside it; without the
    state, one line saying where the live split is kept."""
    lines = []
    services = {service.name: service for service in loaded.services}
    for entry in loaded.config.models:
        traffic = endpoint_traffic(entry)
        if traffic is None:
            continue
        service = services[entry.name]
        key = f"{service.namespace}/{entry.name}"
        configured = f"configured {_split(dict(traffic.weighted_clusters))}"
        if traffic.mirrors:
            configured += f"; mirrored {_split(dict(traffic.mirrors))}"
        if live is None:
            lines.append(f"  {key:<40} {configured}")
            continue
        applied = live.get(key)
        if applied is None:
            shown = "live: the configured split (the router holds no other)"
        else:
            details = [f"phase {applied.phase}" if applied.phase else "", f"step {applied.step}" if applied.step is not None else "",
                       f"cause {applied.cause}" if applied.cause else "", f"revision {applied.revision}" if applied.revision else ""]
            shown = f"live {_split(applied.split)}" + (f" ({', '.join(d for d in details if d)})" if any(details) else "")
            if applied.revision and applied.revision != _configured_revision(service, entry, loaded.config):
                shown += "; stale: decided for another configuration, the router drops it and applies the configured split"
        lines.append(f"  {key:<40} {configured}  |  {shown}")
    if lines and live is None:
        lines.append(f"  live split: kept by the router in ConfigMap {ROUTER_STATE_CONFIGMAP} (namespace {ROUTER_NAMESPACE}, key {ROUTER_STATE_KEY}); "
                     "compare with `aksinf plan --live-state FILE`")
    return ["Endpoints (configured target | live split):", *lines] if lines else []


def main(stack: str, out_dir: Path, *, config: Mapping[str, Any] | None = None,
         policy_overrides: Mapping[str, Any] | None = None, live_state: Mapping[str, LiveTraffic] | None = None, out=None) -> int:
    """Plan `stack` into `out_dir` (report to `out`, default the current stdout); non-zero on a program error
    or any mandatory violation. `live_state`: the router's live splits (`read_live_state`), shown beside the
    configured ones."""
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
    loaded = _loaded(stack, config)
    for line in endpoint_lines(loaded, live_state):
        print(line, file=out)
    for warning in warnings_of(loaded):
        print(f"Warning: {warning}", file=out)
    for level in LEVELS:
        print(f"Policies {level}: {len(diagnostics[level])} violation(s)", file=out)
        for d in diagnostics[level]:
            print(f"  [{d.policy}] {_short(d.urn) or '(stack)'}: {d.message.splitlines()[-1]}", file=out)
    return 1 if diagnostics["mandatory"] else 0
