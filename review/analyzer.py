"""Run the policy pack offline through the real pulumi-policy analyzer servicer, in-process.

Resources go through `Analyze` with their raw inputs (secret envelopes kept) and the stack
through `AnalyzeStack` with outputs, parents and dependencies, exactly as the engine sends
them. Policy config is applied through the servicer's own `Configure`, the path
`--policy-pack-config` takes: `{"rule": "advisory"}` or `{"rule": {"enforcementLevel": ..., <props>}}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policies.pack import LEVELS, PACK, VERSION
from policies.rules import ALL
from review.offline import CapturedResource

_WIRE_LEVEL = {"advisory": 0, "mandatory": 1, "disabled": 2, "remediate": 3}


@dataclass(frozen=True, order=True)
class Diagnostic:
    level: str
    policy: str
    urn: str
    message: str


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(value, struct)
    return struct


def _configure(servicer: _PolicyAnalyzerServicer, config: Mapping[str, Any]) -> None:
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, value in config.items():
        entry = {"enforcementLevel": value} if isinstance(value, str) else dict(value)
        level = entry.pop("enforcementLevel", None)
        if level is None:
            level = next(str(p.enforcement_level.value) for p in ALL if p.name == name)
        request.policyConfig[name].CopyFrom(
            analyzer_pb2.PolicyConfig(enforcementLevel=_WIRE_LEVEL[level], properties=_struct(entry)))
    servicer.Configure(request, None)


def _options(resource: CapturedResource) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=resource.protect, ignoreChanges=resource.ignore_changes,
        deleteBeforeReplace=resource.delete_before_replace)


def analyze(resources: Iterable[CapturedResource], config: Mapping[str, Any] | None = None) -> dict[str, list[Diagnostic]]:
    """Diagnostics grouped by enforcement level (`mandatory`, `advisory`), sorted."""
    servicer = _PolicyAnalyzerServicer(PACK, VERSION, ALL, EnforcementLevel.ADVISORY)
    _configure(servicer, config or {})
    resources = [r for r in resources if r.custom]
    found: set[Diagnostic] = set()

    def collect(response, urn: str = "") -> None:
        for d in response.diagnostics:
            level = analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel).lower()
            found.add(Diagnostic(level, d.policyName, d.urn or urn, d.message))

    for r in resources:
        collect(servicer.Analyze(analyzer_pb2.AnalyzeRequest(
            type=r.type, name=r.name, urn=r.urn, properties=_struct(r.raw_inputs), options=_options(r)), None), r.urn)
    stack = [analyzer_pb2.AnalyzerResource(
        type=r.type, name=r.name, urn=r.urn, properties=_struct(r.outputs), options=_options(r),
        parent=r.parent or "", dependencies=r.dependencies) for r in resources]
    collect(servicer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=stack), None))
    grouped: dict[str, list[Diagnostic]] = {level: [] for level in LEVELS}
    for d in sorted(found):
        grouped.setdefault(d.level, []).append(d)
    return grouped
