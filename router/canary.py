"""Automated canary analysis: a pure function (per-version stats and time in, next traffic split out).

A rollout moves one treatment version of an endpoint through `steps` (percent of client traffic), the
control version (the endpoint's default) taking the rest. Each step lasts one analysis window; the stats
given are those of the current window (requests, 5xx and p99 per version since `state.window_started`,
which the control plane derives from Envoy's per-cluster counters and histograms). Every call decides:

- roll back (treatment to 0 %, all its traffic to the control) as soon as the treatment's 5xx exceed
  `max_server_error_rate` of max(requests, min_requests) -- so a failing canary is stopped within its
  error budget, not at the end of the window -- or, once both versions served `min_requests`, as soon
  as its p99 exceeds `max_p99_latency_ratio` x the control's;
- hold while the window runs, and past its end while the treatment has fewer than `min_requests`
  (the window extends: no promotion on too little evidence);
- step up after a healthy window with enough requests; a healthy window at the last step completes it.

A rollback is sticky and a completed rollout stays: both hold until `revision` changes (any change of
the endpoint's configuration), which restarts the rollout at the first step. No I/O here: reading
Envoy's stats, applying the split and exporting decisions live with the control plane, as for
router/autoscaler.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

PERCENT = 100

Action = Literal["step_up", "hold", "roll_back"]
Phase = Literal["progressing", "completed", "rolled_back"]


@dataclass(frozen=True)
class RolloutPolicy:
    """One endpoint's rollout, as validated by the stack contract (`models[].rollout`)."""

    control: str  # the default version: it takes what the others leave
    treatment: str  # the version the rollout moves
    steps: tuple[int, ...]  # treatment percentages, strictly increasing
    window_seconds: float
    max_server_error_rate: float  # 5xx / requests of the treatment
    max_p99_latency_ratio: float  # treatment p99 / control p99
    min_requests: int  # per window, per version, before it is judged
    others: tuple[tuple[str, int], ...] = ()  # fixed shares of the endpoint's other versions
    revision: str = ""  # changes whenever the endpoint's configuration does


@dataclass(frozen=True)
class VersionStats:
    """What the routers saw of one version during the current window, summed over router replicas."""

    requests: int = 0
    server_errors: int = 0  # 5xx answered to clients
    p99_ms: float | None = None  # None: no latency sample yet


@dataclass(frozen=True)
class RolloutState:
    revision: str
    phase: Phase
    step: int  # index into steps (the last one reached when completed or rolled back)
    window_started: float
    cause: str = ""  # why it rolled back


@dataclass(frozen=True)
class Decision:
    action: Action
    split: tuple[tuple[str, int], ...]  # (version, percent of client requests); sums to 100
    reason: str
    state: RolloutState


def split(policy: RolloutPolicy, treatment_percent: int) -> tuple[tuple[str, int], ...]:
    """The endpoint's split with the treatment at `treatment_percent`: the control takes the rest."""
    others = sum(share for _, share in policy.others)
    return ((policy.control, PERCENT - others - treatment_percent), (policy.treatment, treatment_percent), *policy.others)


def _decision(policy: RolloutPolicy, action: Action, state: RolloutState, reason: str) -> Decision:
    percent = 0 if state.phase == "rolled_back" else policy.steps[state.step]
    return Decision(action, split(policy, percent), reason, state)


def decide(policy: RolloutPolicy, state: RolloutState | None, stats: Mapping[str, VersionStats], now: float) -> Decision:
    """The next split of one endpoint. `state` None (or of another revision): the rollout (re)starts now."""
    if state is None or state.revision != policy.revision:
        started = RolloutState(policy.revision, "progressing", 0, now)
        return _decision(policy, "hold", started, f"rollout starts: {policy.treatment} at {policy.steps[0]}%")
    if state.phase == "rolled_back":
        return _decision(policy, "hold", state, f"rolled back ({state.cause}); stays until the configuration changes")
    if state.phase == "completed":
        return _decision(policy, "hold", state, f"rollout complete: {policy.treatment} at {policy.steps[state.step]}%")
    treatment = stats.get(policy.treatment, VersionStats())
    control = stats.get(policy.control, VersionStats())
    budget = policy.max_server_error_rate * max(treatment.requests, policy.min_requests)
    if treatment.server_errors > budget:
        cause = (f"{treatment.server_errors} 5xx in {treatment.requests} requests exceed {policy.max_server_error_rate:.2%} "
                 f"of max(requests, minRequests {policy.min_requests})")
        return _decision(policy, "roll_back", RolloutState(policy.revision, "rolled_back", state.step, now, cause), cause)
    judged = min(treatment.requests, control.requests) >= policy.min_requests
    if judged and treatment.p99_ms is not None and control.p99_ms:
        ratio = treatment.p99_ms / control.p99_ms
        if ratio > policy.max_p99_latency_ratio:
            cause = (f"p99 {treatment.p99_ms:.0f} ms is {ratio:.2f}x the control's {control.p99_ms:.0f} ms "
                     f"(allowed {policy.max_p99_latency_ratio:.2f}x)")
            return _decision(policy, "roll_back", RolloutState(policy.revision, "rolled_back", state.step, now, cause), cause)
    elapsed = now - state.window_started
    if elapsed < policy.window_seconds:
        return _decision(policy, "hold", state, f"analysing: {policy.window_seconds - elapsed:.0f} s of the window left")
    if treatment.requests < policy.min_requests:
        return _decision(policy, "hold", state,
                         f"too few requests: {treatment.requests} < minRequests {policy.min_requests}; the window extends")
    if state.step == len(policy.steps) - 1:
        done = RolloutState(policy.revision, "completed", state.step, now)
        return _decision(policy, "hold", done, f"rollout complete: {policy.treatment} healthy at {policy.steps[state.step]}%")
    stepped = RolloutState(policy.revision, "progressing", state.step + 1, now)
    return _decision(policy, "step_up", stepped,
                     f"healthy window ({treatment.requests} requests, {treatment.server_errors} 5xx): "
                     f"{policy.treatment} {policy.steps[state.step]}% -> {policy.steps[state.step + 1]}%")
