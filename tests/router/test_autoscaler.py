"""The autoscaling decision with a fake clock: eager up, conservative down, clamps, off switches."""

import pytest

from router.autoscaler import (
    AutoscaleSettings,
    Sample,
    decide,
    replicas_for_load,
    resumed_window,
    utilization,
)

SETTINGS = AutoscaleSettings(min_replicas=1, max_replicas=10, target_utilization=0.7, scale_down_window_seconds=60)


def run(samples, settings=SETTINGS):
    """Feed (time, active, pending, ready) samples through `decide`, threading the history."""
    history, desired = (), []
    for t, active, pending, ready in samples:
        decision = decide(Sample(t, active, pending, ready), settings, history)
        history = decision.recommendations
        desired.append(decision.desired)
    return desired


def test_utilization_counts_busy_replicas_and_queued_requests():
    settings = AutoscaleSettings(max_concurrent=2)
    assert utilization(Sample(0, active=4, pending=1, ready_replicas=2), settings) == pytest.approx((4 / 2 + 1) / 2)


def test_scales_up_on_the_next_tick():
    # 2 busy replicas + 2 queued on 2 replicas = 200 % -> ceil(4 / 0.7) = 6 at once.
    assert run([(0, 2, 2, 2)]) == [6]


def test_exactly_on_target_does_not_round_up():
    settings = AutoscaleSettings(target_utilization=0.5)
    assert run([(0, 1, 0, 2)], settings) == [2]


def test_scales_down_only_after_the_window():
    samples = [(0, 7, 0, 10)] + [(t, 0, 0, 10) for t in range(1, 62)]
    desired = run(samples)
    assert desired[0] == 10  # ceil(7 / 0.7)
    assert set(desired[1:60]) == {10}  # still inside the 60 s window
    assert desired[60] == 1  # the burst left the window: down to min


def test_scale_down_goes_to_the_highest_recent_recommendation():
    samples = [(0, 7, 0, 10), (30, 3, 0, 10), (61, 0, 0, 10), (91, 0, 0, 10)]
    assert run(samples) == [10, 10, 5, 1]  # at 61 s the 30 s recommendation (ceil(3/0.7)=5) still counts


def test_clamped_to_min_and_max():
    settings = AutoscaleSettings(min_replicas=2, max_replicas=4)
    assert run([(0, 0, 0, 2)], settings) == [2]
    assert run([(0, 50, 50, 2)], settings) == [4]


def test_disabled_autoscaling_keeps_the_fixed_replicas():
    settings = AutoscaleSettings(enabled=False, fixed_replicas=3)
    assert run([(0, 50, 50, 3), (100, 0, 0, 3)], settings) == [3, 3]


def test_replica_formula_gives_the_documented_286():
    assert replicas_for_load(20, 10, 0.7, 1) == 286
    assert replicas_for_load(20, 10, 0.7, 2) == 143
    with pytest.raises(ValueError):
        replicas_for_load(20, 10, 1.5, 1)


@pytest.mark.parametrize(
    ("previous", "now", "replicas", "expected"),
    [
        ((), 100.0, 10, ((100.0, 10),)),  # a new leader: starts from the 10 replicas running
        (((99.0, 4),), 100.0, 10, ((99.0, 4),)),  # kept by this leader's ticks: its own window
        (((80.0, 4),), 100.0, 10, ((100.0, 10),)),  # a leader elected again: its history is stale (another led since)
    ],
)
def test_a_window_not_kept_by_ticks_starts_from_the_running_replicas(previous, now, replicas, expected):
    assert resumed_window(previous, now, replicas) == expected


def test_a_new_leader_scales_down_only_after_a_full_window():
    """Failover with 10 replicas running and no load left: the old code dropped to 1 at once."""
    history, desired = (), []
    for t in range(62):
        window = resumed_window(history, float(t), desired[-1] if desired else 10)
        decision = decide(Sample(float(t), 0, 0, 10), SETTINGS, window)
        history = decision.recommendations
        desired.append(decision.desired)
    assert desired[:60] == [10] * 60 and desired[-1] == 1
