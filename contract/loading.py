"""The one loader: stack values in, (validated stack config, loaded model services) out.

Every section is validated on its own, then the service folders of `models` are read once
(`contract.service.inspect_service`), then the cross-checks run on whatever parsed. All problems
are raised together as one `ConfigError`; nothing is returned unless everything is valid. The
deployers and `aksinf serve` take the services from here and never read a service folder again.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from contract import endpoints, limits
from contract.checks import CROSS_CHECKS, EVALUATED_ON, ServiceFolders
from contract.errors import (
    REDACTED,
    ConfigError,
    ConfigIssue,
    alias_of,
    issues_from,
    unwrap_model,
)
from contract.names import Names
from contract.service import ModelService, inspect_service
from contract.stack import NAMESPACE, PROJECT_ROOT, SECRET_KEYS, ModelEntry, StackConfig

STACKS_DIR = PROJECT_ROOT / "stacks"
LOCATION_KEY = "azure-native:location"


@dataclass(frozen=True)
class LoadedStack:
    """A valid stack: its config and its model services (in `models` order), each folder read once."""

    config: StackConfig
    services: tuple[ModelService, ...]
    names: Names | None = None  # the Azure names, when the project and stack were given
    # endpoint name -> its versions' services, in `versions` order (contract/endpoints.py); plain services: absent
    versions: Mapping[str, tuple[ModelService, ...]] = dataclasses.field(default_factory=dict)


def parse_config_value(raw: str) -> Any:
    """Pulumi hands every config value over as a string; objects and lists as JSON."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw
    except RecursionError:  # nested beyond the parser's stack: `limits.too_deep` reports it with its key
        return limits.TOO_DEEP




def _service_folders(models: list[ModelEntry]) -> ServiceFolders:
    return tuple(
        inspect_service(entry.folder, entry.name, entry.deployment, model_dir=entry.model_dir, key=f"models[{i}]")
        if entry.folder.is_dir() else None
        for i, entry in enumerate(models)
    )


def load_stack(
    values: Mapping[str, Any], location: Any, secret_keys: Iterable[str] = (), deployment: tuple[str, str] | None = None,
    evaluated_on: date | None = None,
) -> LoadedStack:
    """Validate `aks-inference:*` values (keys without the namespace) and load their services.

    `deployment` (project, stack): also check every Azure name derived from them. `evaluated_on`: the day
    date-bound rules (the Kubernetes version's support) are checked for; None is today. Raises ConfigError
    with every issue."""
    secret = set(secret_keys) | SECRET_KEYS
    issues: list[ConfigIssue] = []
    parsed: dict[str, Any] = {}
    sections = {alias_of(name, StackConfig): name for name in StackConfig.model_fields}
    for key in values:
        if key not in sections or key == "location":
            allowed = [k for k in sections if k != "location"]
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = f"did you mean {NAMESPACE}:{close[0]}? " if close else ""
            issues.append(ConfigIssue(f"{NAMESPACE}:{key}", key, f"unknown key; {hint}allowed keys: {', '.join(allowed)}"))
    candidates = dict(values)
    if location is None:
        issues.append(ConfigIssue(LOCATION_KEY, None, "is required (the Azure region, e.g. westeurope)"))
    else:
        candidates["location"] = location
    for alias, name in sections.items():
        field = StackConfig.model_fields[name]
        if alias not in candidates:
            if field.is_required():
                if alias != "location":
                    issues.append(ConfigIssue(alias, None, f"is required; allowed: {_allowed(field.annotation)}"))
                continue
            parsed[alias] = field.get_default(call_default_factory=True)
            continue
        key = alias if alias != "location" else LOCATION_KEY
        if limits.too_deep(candidates[alias]):
            issues.append(ConfigIssue(key, "…", f"is nested deeper than {limits.MAX_NESTING} levels; allowed: the documented shape"))
            continue
        try:
            # The field's own constraints (e.g. the region's validator) travel in its metadata.
            annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            parsed[alias] = TypeAdapter(annotation).validate_python(candidates[alias])
        except ValidationError as exc:
            model = unwrap_model(field.annotation)
            root = model if isinstance(model, type) and issubclass(model, BaseModel) else None
            issues.extend(issues_from(exc, key, alias in secret, root))
    if "models" in parsed:
        parsed["services"] = _service_folders(parsed["models"])
        parsed[endpoints.VERSION_FOLDERS] = endpoints.version_folders(parsed["models"])
    parsed[EVALUATED_ON] = evaluated_on or date.today()
    for needed, check in (*CROSS_CHECKS, *endpoints.CHECKS):
        if all(s in parsed for s in needed):
            for issue in check(*(parsed[s] for s in needed)):
                issues.append(ConfigIssue(issue.key, REDACTED if re.split(r"[.\[]", issue.key)[0] in secret else issue.value, issue.problem))
    if deployment is not None:
        issues += _plain_text_secrets(values, set(secret_keys))
    names = None
    if deployment is not None and "location" in parsed:
        names = Names(*deployment, parsed["location"])
        issues += names.problems(name for entry in parsed.get("models", ()) for name in (entry.name, *(v.name for v in entry.versions)))
    if issues:
        raise ConfigError(issues)
    services = tuple(found.service for found in parsed.pop("services"))
    versions = endpoints.loaded_versions(parsed["models"], parsed.pop(endpoints.VERSION_FOLDERS)) if "models" in parsed else {}
    parsed.pop(EVALUATED_ON)
    return LoadedStack(StackConfig.model_validate(parsed), services, names, versions)


def _plain_text_secrets(values: Mapping[str, Any], secret_keys: set[str]) -> list[ConfigIssue]:
    """The router's TLS private key must reach Pulumi as a secret: a plain value would sit unencrypted in
    the stack file and in the state's inputs. Checked where the program reads its config (the Pulumi
    engine says which keys are secret), never for stack files read outside Pulumi."""
    tls = values.get("tls")
    if isinstance(tls, Mapping) and tls.get("key") and "tls" not in secret_keys:
        return [ConfigIssue("tls.key", REDACTED,
                            "is not a Pulumi secret; allowed: set it encrypted with "
                            f"`pulumi config set --secret --path {NAMESPACE}:tls.key < key.pem`")]
    return []


def validate_stack_config(values: Mapping[str, Any], location: Any, secret_keys: Iterable[str] = ()) -> StackConfig:
    """`load_stack` for callers that need only the config (the egress table, checks of one section)."""
    return load_stack(values, location, secret_keys).config


def _allowed(annotation: Any) -> str:
    args = typing.get_args(annotation)
    return " | ".join(map(str, args)) if typing.get_origin(annotation) is Literal else str(annotation)


# --------------------------------------------------------------------------- stack files


# Pulumi's stack-name characters; anything else (a '/' above all) is no stack of this project.
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def stack_file(stack: str) -> Path:
    if not _STACK_NAME.fullmatch(stack) or stack in (".", ".."):
        raise ConfigError([ConfigIssue("stack", stack, "is not a stack name: letters, digits, '-', '_' and '.' (stacks/Pulumi.<stack>.yaml)")])
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def read_stack_file(stack: str) -> dict[str, Any]:
    """The `config:` map of a stack file with every key fully namespaced; ConfigError if there is none."""
    path = stack_file(stack)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("stack", stack, f"has no stack file (looked for {path})")]) from None
    except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError) as error:
        problem = f"is not a readable YAML stack file: {error}".replace("\n", " ")
        raise ConfigError([ConfigIssue("stack", str(path), problem)]) from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config or {}, dict):
        raise ConfigError([ConfigIssue("stack", str(path), "must hold a `config:` map of keys to values")])
    return {key if ":" in key else f"{NAMESPACE}:{key}": value for key, value in (config or {}).items()}


def load_stack_file(stack: str) -> LoadedStack:
    """`load_stack` on a stack file's values (`aksinf serve --stack`)."""
    raw = read_stack_file(stack)
    prefix = f"{NAMESPACE}:"
    values = {key.removeprefix(prefix): value for key, value in raw.items() if key.startswith(prefix)}
    return load_stack(values, raw.get(LOCATION_KEY))
