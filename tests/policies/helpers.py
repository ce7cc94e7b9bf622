"""Edits of the real program's captured resources, for policy cases: change inputs and outputs alike,
add a realistic resource built from a captured one, and the violations the real analyzer reports."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable

from policies.rules import ALL
from review.analyzer import analyze
from review.offline import CapturedResource

Resources = list[CapturedResource]
Edit = Callable[[Resources], Resources]


def edit(type_: str, change: Callable[[dict], None], name: str | None = None, **options) -> Edit:
    """Apply `change` to the inputs and outputs of the matching resources (and set options)."""

    def apply(resources: Resources) -> Resources:
        edited = []
        for r in resources:
            if r.type == type_ and (name is None or (r.inputs.get("metadata") or {}).get("name") == name):
                r = dataclasses.replace(r, raw_inputs=copy.deepcopy(r.raw_inputs), outputs=copy.deepcopy(r.outputs), **options)
                change(r.raw_inputs)
                change(r.outputs)
            edited.append(r)
        return edited

    return apply


def add(type_: str, name: str, make: Callable[[dict], dict], as_type: str | None = None, template: str | None = None) -> Edit:
    """Add a realistic resource the program does not create, built from a captured one of `type_`
    (the one whose metadata.name is `template`, if given), registered as `as_type` when given
    (e.g. a Deployment's pod template as a StatefulSet)."""

    def apply(resources: Resources) -> Resources:
        source = next(r for r in resources if r.type == type_
                      and (template is None or (r.inputs.get("metadata") or {}).get("name") == template))
        props = make(copy.deepcopy(source.raw_inputs))
        new_type = as_type or type_
        qualified = source.urn.rsplit("::", 1)[0]  # ...::<parent types>$<type>, ending with the source's type
        urn = qualified[: len(qualified) - len(source.type)] + new_type + "::" + name
        return resources + [dataclasses.replace(source, type=new_type, name=name, urn=urn, raw_inputs=props, inputs=props,
                                                outputs=copy.deepcopy(props), dependencies=[])]

    return apply


def drop(type_: str) -> Edit:
    return lambda resources: [r for r in resources if r.type != type_]


def chain(*steps: Edit) -> Edit:
    def apply(resources):
        for step in steps:
            resources = step(resources)
        return resources
    return apply


def setter(path: str, value) -> Callable[[dict], None]:
    """`a.b.0.c` style path; None removes the key."""

    def change(props: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            props = props[int(key)] if isinstance(props, list) else props.setdefault(key, {})
        if value is None:
            props.pop(last, None)
        else:
            props[last] = value

    return change


def container(change: Callable[[dict], None], index: int = 0) -> Callable[[dict], None]:
    return lambda props: change(props["spec"]["template"]["spec"]["containers"][index])


def no_change(resources: Resources) -> Resources:
    return resources


def violations(resources: Resources, config=None, only: Iterable[str] | None = None) -> set[str]:
    """The rules the real analyzer reports. `only`: the rules a test is about; every other rule is disabled
    as a policy-pack config would disable it (the servicer then skips it; a rule's verdict depends on no other
    rule), unless `config` sets it. A whole-pack analysis evaluates every rule on every resource: seconds a call."""
    settings = dict(config or {})
    if only is not None:
        kept = set(only)
        settings = {**{rule.name: "disabled" for rule in ALL if rule.name not in kept}, **settings}
    found = analyze(resources, settings)
    return {d.policy for level in found.values() for d in level}
