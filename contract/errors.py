"""The error vocabulary of every contract: one `ConfigIssue` per problem (full key, value, what is allowed),
all of them raised together as a `ConfigError`, and the pydantic plumbing that turns a `ValidationError`
into keyed issues. The stack sections and the v1 files share it.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the full key, the value found, and what is allowed."""

    key: str
    value: Any
    problem: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem} (got {self.value!r})"


class ConfigError(ValueError):
    """Every problem found in a stack's config, reported together."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{len(issues)} problem(s) in the stack config:\n{lines}")


REDACTED = "[secret]"


class Section(BaseModel):
    """Base of every config model: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True, populate_by_name=False)


def alias_of(field_name: str, model: type[BaseModel]) -> str:
    field = model.model_fields[field_name]
    return field.alias or field_name


def _aliases(model: type[BaseModel]) -> list[str]:
    return [alias_of(name, model) for name in model.model_fields]


def unwrap_model(annotation: Any) -> Any:
    """Strip Annotated/Optional/list wrappers to reach a model class."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return unwrap_model(typing.get_args(annotation)[0])
    if origin in (list, typing.Union) or str(origin) == "<class 'types.UnionType'>":
        for arg in typing.get_args(annotation):
            inner = unwrap_model(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _model_at(root: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that owns the key at `path` (aliases and list indexes), if any."""
    model: Any = root
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        by_alias = {alias_of(n, model): n for n in model.model_fields}
        if part not in by_alias:
            return None
        model = unwrap_model(model.model_fields[by_alias[part]].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _key(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def issues_from(error: ValidationError, key: str, secret: bool, root: type[BaseModel] | None) -> list[ConfigIssue]:
    """Issues keyed `key.<loc>`; `root` is the model `loc` starts from (None: not a model, no key hints)."""
    issues = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        path = (key, *loc)
        value = REDACTED if secret else err.get("input")
        if err["type"] == "extra_forbidden":
            owner = _model_at(root, loc[:-1]) if root is not None else None
            allowed = _aliases(owner) if owner else []
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problem = f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
            value = str(path[-1])
        elif err["type"] == "missing":
            problem = "is required"
            value = None
        else:
            problem = err["msg"].removeprefix("Value error, ")
        issues.append(ConfigIssue(_key(path), value, problem))
    return issues


def join_key(prefix: str, key: str) -> str:
    """`prefix.key`, or whichever of the two is not empty."""
    if not prefix:
        return key
    return prefix if not key else f"{prefix}.{key}"
