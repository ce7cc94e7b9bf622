"""`aksinf plan --policy-config FILE`: the policy pack config file `pulumi up --policy-pack-config FILE` takes,
read and checked before anything runs, so the offline plan and the deployment judge a stack alike.

The format (https://www.pulumi.com/docs/using-pulumi/crossguard/configuration/): a JSON object from a rule
name to its enforcement level (`"advisory"`) or to an object with `enforcementLevel` and the rule's own
config properties (`{"enforcementLevel": "advisory", "maxVcpus": 8}`); the key `all` sets the level of every
rule, and a rule's own entry overrides it. Every problem is reported at once, keyed by the rule and property
(`devtest-cluster-size.maxVcpus`), with the bad value and what is allowed: unknown rules (with the closest
name), levels, unknown properties, and values against the rule's config schema.
"""

from __future__ import annotations

import difflib
import json
from datetime import date
from pathlib import Path
from typing import Any

from contract.errors import ConfigError, ConfigIssue
from policies.rules import ALL

ALL_RULES = "all"
LEVELS = ("advisory", "mandatory", "disabled")  # what a config file may set; our rules have no remediation
LEVEL = "enforcementLevel"
# JSON Schema's types, as json.loads returns them (a bool is no integer here, as in JSON Schema).
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "integer": int, "number": (int, float), "string": str, "boolean": bool, "object": dict, "array": list,
}
# The schema keywords the pack's rules use and `schema_problem` checks (a test keeps the pack within them).
SCHEMA_KEYWORDS = frozenset({"type", "minimum", "items", "format"})


def schema_problem(value: Any, schema: dict) -> str | None:
    """Why `value` does not fit `schema` (the subset of JSON Schema in SCHEMA_KEYWORDS), or None."""
    expected = schema.get("type")
    python = _JSON_TYPES.get(expected)
    if python is not None and (not isinstance(value, python) or (isinstance(value, bool) and expected != "boolean")):
        return f"must be a JSON {expected}"
    if "minimum" in schema and value < schema["minimum"]:
        return f"must be at least {schema['minimum']}"
    if schema.get("format") == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return "must be a date, YYYY-MM-DD"
    if "items" in schema:
        for i, item in enumerate(value):
            problem = schema_problem(item, schema["items"])
            if problem:
                return f"item {i} {problem}"
    return None


def _level_issue(key: str, level: Any) -> ConfigIssue | None:
    if level in LEVELS:
        return None
    return ConfigIssue(key, level, f"is not an enforcement level; allowed: {', '.join(LEVELS)}")


def check(document: Any, source: str) -> dict[str, dict[str, Any]]:
    """The config as `{rule: {"enforcementLevel"?: ..., <property>: ...}}` (the `all` level spread over every
    rule), or ConfigError with every problem; keys are prefixed with `source` (the file)."""
    if not isinstance(document, dict):
        raise ConfigError([ConfigIssue(source, type(document).__name__, "must be a JSON object of rule name -> level or {enforcementLevel, properties}")])
    rules = {policy.name: policy for policy in ALL}
    issues: list[ConfigIssue] = []
    config: dict[str, dict[str, Any]] = {}
    everyone = document.get(ALL_RULES)
    if everyone is not None:
        level = everyone.get(LEVEL) if isinstance(everyone, dict) and set(everyone) == {LEVEL} else everyone
        issue = _level_issue(f"{source}: {ALL_RULES}", level)
        issues += [issue] if issue else []
        config = {name: {LEVEL: level} for name in rules}
    for name, value in document.items():
        if name == ALL_RULES:
            continue
        key = f"{source}: {name}"
        if name not in rules:
            close = difflib.get_close_matches(name, list(rules), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            issues.append(ConfigIssue(key, name, f"is not a rule of the pack; {hint}allowed: the rule names of docs/policies.md, or {ALL_RULES}"))
            continue
        entry = {LEVEL: value} if isinstance(value, str) else value
        if not isinstance(entry, dict):
            issues.append(ConfigIssue(key, value, f"must be an enforcement level ({', '.join(LEVELS)}) or an object with {LEVEL} and the rule's properties"))
            continue
        if LEVEL in entry:
            issue = _level_issue(f"{key}.{LEVEL}", entry[LEVEL])
            issues += [issue] if issue else []
        schema = rules[name].config_schema
        properties = dict(schema.properties) if schema else {}
        for prop, prop_value in entry.items():
            if prop == LEVEL:
                continue
            if prop not in properties:
                allowed = ", ".join([LEVEL, *sorted(properties)])
                issues.append(ConfigIssue(f"{key}.{prop}", prop_value, f"is not a property of {name}; allowed: {allowed}"))
                continue
            problem = schema_problem(prop_value, properties[prop])
            if problem:
                issues.append(ConfigIssue(f"{key}.{prop}", prop_value, problem))
        config[name] = {**config.get(name, {}), **entry}
    if issues:
        raise ConfigError(issues)
    return config


def read(path: Path) -> dict[str, dict[str, Any]]:
    """`check` on the file at `path`; an unreadable or non-JSON file is one keyed problem."""
    source = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(source, source, "file not found; allowed: a JSON policy pack config file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(source, source, f"cannot be read: {exc}")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigIssue(source, source, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]) from None
    return check(document, source)
