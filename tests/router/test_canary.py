"""The canary decision table (router/canary.py): stats and time in, step up / hold / roll back out."""

from __future__ import annotations

import pytest

from router.canary import (
    Decision,
    RolloutPolicy,
    RolloutState,
    VersionStats,
    decide,
    split,
)

POLICY = RolloutPolicy(
    control="v1", treatment="v2", steps=(10, 50, 100), window_seconds=60, max_server_error_rate=0.01,
    max_p99_latency_ratio=1.5, min_requests=100, revision="r1",
)
HEALTHY = {"v1": VersionStats(900, 0, 100.0), "v2": VersionStats(200, 1, 110.0)}


def at(step: int, started: float = 0.0, phase: str = "progressing") -> RolloutState:
    return RolloutState("r1", phase, step, started)


def percent_of(decision: Decision, version: str) -> int:
    return dict(decision.split)[version]


def test_a_rollout_starts_at_the_first_step():
    decision = decide(POLICY, None, {}, now=5)
    assert decision.action == "hold" and decision.split == (("v1", 90), ("v2", 10))
    assert decision.state == RolloutState("r1", "progressing", 0, 5)


def test_a_healthy_canary_steps_up_once_per_window():
    state, now, seen = decide(POLICY, None, {}, now=0).state, 0.0, []
    for _ in range(3):
        now += 30  # half a window: nothing moves
        halfway = decide(POLICY, state, HEALTHY, now)
        assert halfway.action == "hold" and halfway.state == state and "analysing" in halfway.reason
        now += 30
        decision = decide(POLICY, state, HEALTHY, now)
        seen.append((decision.action, percent_of(decision, "v2")))
        state = decision.state
    assert seen == [("step_up", 50), ("step_up", 100), ("hold", 100)]
    assert state.phase == "completed" and percent_of(decision, "v1") == 0


def test_a_completed_rollout_stays_whatever_the_stats():
    done = at(2, phase="completed")
    decision = decide(POLICY, done, {"v2": VersionStats(1000, 900, 9000.0)}, now=10_000)
    assert decision.action == "hold" and decision.state == done and percent_of(decision, "v2") == 100


def test_a_5xx_spike_rolls_back_to_the_control_at_once():
    decision = decide(POLICY, at(1, started=0), {"v1": VersionStats(500, 0, 100.0), "v2": VersionStats(500, 20, 100.0)}, now=10)
    assert decision.action == "roll_back" and decision.split == (("v1", 100), ("v2", 0))
    assert decision.state.phase == "rolled_back" and "20 5xx in 500 requests" in decision.reason


def test_errors_past_the_budget_roll_back_before_min_requests():
    """With 1 % of minRequests 100 as the budget, the second 5xx stops the canary: no need to wait for 100 requests."""
    assert decide(POLICY, at(0), {"v2": VersionStats(5, 1)}, now=1).action == "hold"
    assert decide(POLICY, at(0), {"v2": VersionStats(5, 2)}, now=1).action == "roll_back"


def test_too_few_requests_hold_past_the_window():
    decision = decide(POLICY, at(0, started=0), {"v1": VersionStats(900, 0, 100.0), "v2": VersionStats(99, 0, 100.0)}, now=600)
    assert decision.action == "hold" and "too few requests: 99" in decision.reason
    assert decision.state == at(0, started=0)  # the window extends: stats keep accumulating


def test_a_latency_regression_rolls_back():
    slow = {"v1": VersionStats(900, 0, 100.0), "v2": VersionStats(200, 0, 151.0)}
    decision = decide(POLICY, at(1), slow, now=5)
    assert decision.action == "roll_back" and "1.51x the control's 100 ms" in decision.reason


def test_latency_is_judged_only_with_enough_requests_on_both_sides():
    few_control = {"v1": VersionStats(50, 0, 100.0), "v2": VersionStats(200, 0, 900.0)}
    assert decide(POLICY, at(1), few_control, now=5).action == "hold"
    no_sample = {"v1": VersionStats(900, 0, None), "v2": VersionStats(200, 0, 900.0)}
    assert decide(POLICY, at(1), no_sample, now=5).action == "hold"


def test_a_rollback_is_sticky_until_the_configuration_changes():
    rolled = decide(POLICY, at(1), {"v2": VersionStats(500, 100, 100.0)}, now=10).state
    later = decide(POLICY, rolled, HEALTHY, now=100_000)
    assert later.action == "hold" and later.state == rolled and percent_of(later, "v2") == 0
    assert "stays until the configuration changes" in later.reason
    changed = RolloutPolicy(**{**POLICY.__dict__, "revision": "r2"})
    restarted = decide(changed, rolled, HEALTHY, now=100_001)
    assert restarted.state == RolloutState("r2", "progressing", 0, 100_001) and percent_of(restarted, "v2") == 10


@pytest.mark.parametrize("treatment, expected", [(0, (("v1", 85), ("v2", 0), ("v3", 15))), (85, (("v1", 0), ("v2", 85), ("v3", 15)))])
def test_other_versions_keep_their_share(treatment, expected):
    policy = RolloutPolicy(**{**POLICY.__dict__, "others": (("v3", 15),)})
    assert split(policy, treatment) == expected
