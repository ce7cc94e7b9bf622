"""The control loop with a fake clock, collector and actuator: scaling, metrics, and the window across rediscovery."""

from router.autoscaler import AutoscaleSettings


class RecordingActuator:
    def __init__(self, ready: int):
        self.ready, self.wanted, self.calls = ready, ready, []

    def ready_replicas(self, service):
        return self.ready

    def target(self, service):
        return self.wanted

    def scale(self, service, replicas):
        self.calls.append(replicas)
        self.wanted = replicas


def test_control_loop_scales_on_change_exports_metrics_and_keeps_the_window_across_rediscovery():
    from prometheus_client import generate_latest

    from router.controlplane import ControlPlane, ManagedService
    from router.metrics import Load

    now = [0.0]
    load = {"model-models-alpha": Load(active=4, pending=3, routers_seen=2)}
    settings = AutoscaleSettings(min_replicas=1, max_replicas=20, scale_down_window_seconds=10)
    actuator = RecordingActuator(ready=2)
    plane = ControlPlane(
        [ManagedService("alpha", "model-models-alpha", settings)], actuator, ["http://127.0.0.1:1"],
        clock=lambda: now[0], collector=lambda urls: load,
    )
    assert plane.tick()["alpha"].desired == 10  # ceil((4 + 3) / 0.7)
    plane.tick()
    assert actuator.calls == [10]  # no second patch for the same decision
    exported = generate_latest(plane.registry).decode()
    assert 'aksinf_desired_replicas{service="alpha"} 10.0' in exported
    assert 'aksinf_ready_replicas{service="alpha"} 2.0' in exported
    assert 'aksinf_scaling_decisions_total{direction="up",service="alpha"} 1.0' in exported

    # Discovery re-lists the service with a new max: the new max applies at once, the scale-down window survives.
    plane.set_services([ManagedService("alpha", "model-models-alpha", AutoscaleSettings(max_replicas=8, scale_down_window_seconds=10))])
    load.clear()
    now[0] = 5.0
    assert plane.tick()["alpha"].desired == 8  # the earlier 10 is still in the window, clamped to the new max
    now[0] = 11.0
    assert plane.tick()["alpha"].desired == 1
    assert actuator.calls == [10, 8, 1]

    plane.set_services([])  # the model Service was deleted
    assert "alpha" not in generate_latest(plane.registry).decode()


def test_a_new_leaders_first_tick_keeps_the_replicas_running():
    """The control plane's window starts from the Deployment's replicas, not from nothing."""
    from router.controlplane import ControlPlane, ManagedService

    now = [0.0]
    actuator = RecordingActuator(ready=10)
    settings = AutoscaleSettings(min_replicas=1, max_replicas=20, scale_down_window_seconds=10)
    plane = ControlPlane([ManagedService("alpha", "model-models-alpha", settings)], actuator, [], clock=lambda: now[0], collector=lambda urls: {})
    for second in range(10):
        now[0] = float(second)
        plane.tick()
    assert actuator.calls == []  # no load for 9 s, still within the window that started with 10 replicas
    now[0] = 10.0
    plane.tick()
    assert actuator.calls == [1]  # a full window after the first tick


def test_local_mode_measures_service_time_from_its_envoys_counters():
    """on_latency gets the service time per service from successive readings, queueing excluded."""
    from router.controlplane import ControlPlane, ManagedService
    from router.metrics import Load

    now, reading, seen = [0.0], {"model-models-alpha": Load(active=1, pending=30, started=0)}, []
    plane = ControlPlane(
        [ManagedService("alpha", "model-models-alpha", AutoscaleSettings())], RecordingActuator(ready=1), [],
        clock=lambda: now[0], collector=lambda urls: reading, on_latency=seen.append,
    )
    plane.tick()
    now[0], reading["model-models-alpha"] = 1.0, Load(active=1, pending=60, started=100)
    plane.tick()
    # 1 in service, 100 departures in 1 s: 10 ms (the 60 queued do not count), halfway from the 1 ms prior.
    assert seen == [{"alpha": 5.5}]


# --------------------------------------------------------------------------- the autoscaler's window across failover


class MemoryStore:
    """StateStore in memory, through the stored text (what a ConfigMap or file would hold): counts writes."""

    def __init__(self):
        self.text, self.writes = "", 0

    def load(self):
        from router.state import parse_state

        return parse_state(self.text, "memory")

    def save(self, state):
        from router.state import dump_state

        text = dump_state(state)
        if text != self.text:
            self.text, self.writes = text, self.writes + 1


def test_a_new_leader_continues_the_stored_window_no_earlier_scale_down_and_no_later():
    """Pure: the window a new leader did not keep comes from the store (in its clock), and its peak expires when
    it would have under the previous leader; without it the leader would start from the running replicas."""
    from router.autoscaler import Sample, decide, resumed_window

    settings = AutoscaleSettings(min_replicas=1, max_replicas=20, scale_down_window_seconds=60)
    carried = ((0.0, 10), (30.0, 1))  # the previous leader's peak at t=0, quiet since; it died at t=30
    idle = Sample(45.0, 0, 0, 10)
    assert decide(idle, settings, resumed_window((), 45.0, 10, carried)).desired == 10  # 15 s after failover: kept
    assert decide(Sample(61.0, 0, 0, 10), settings, resumed_window((), 61.0, 10, carried)).desired == 1  # the peak is 61 s old
    assert resumed_window((), 45.0, 10) == ((45.0, 10),)  # no store: a full window from now (later, never earlier)
    # A stored window that does not account for the replicas running lags a scale-up: not trusted.
    assert resumed_window((), 45.0, 12, carried) == ((45.0, 12),)


def test_leader_change_mid_window_through_two_planes_sharing_one_store():
    """Leader A scales up for a burst and dies 20 s later; B (another process: another monotonic clock) takes over
    after the lease expires and keeps the replicas until A's window would have ended, then scales down."""
    from router.controlplane import ControlPlane, ManagedService
    from router.metrics import Load

    store, wall = MemoryStore(), [1_700_000_000.0]
    settings = AutoscaleSettings(min_replicas=1, max_replicas=20, scale_down_window_seconds=60)
    service = ManagedService("alpha", "model-models-alpha", settings)
    load = {"model-models-alpha": Load(active=7, pending=0)}
    actuator = RecordingActuator(ready=1)
    a_clock = [5000.0]
    a = ControlPlane([service], actuator, [], clock=lambda: a_clock[0], wall_clock=lambda: wall[0], collector=lambda urls: load, store=store)
    for second in range(21):
        if second == 1:
            load.clear()  # the burst is over after one second
        a_clock[0], wall[0] = 5000.0 + second, 1_700_000_000.0 + second
        a.tick()
    assert actuator.calls == [10] and store.writes < 21  # persisted on change of the stored form, not every tick
    b_clock = [10.0]
    b = ControlPlane([service], actuator, [], clock=lambda: b_clock[0], wall_clock=lambda: wall[0], collector=lambda urls: load, store=store)
    downs = []
    for second in range(36, 70):  # the lease expired: B leads from 36 s after the burst
        b_clock[0], wall[0] = 10.0 + second, 1_700_000_000.0 + second
        b.tick()
        if actuator.calls[-1] == 1 and not downs:
            downs.append(second)
    # The burst's recommendation was at 0 s (stored rounded up to 5 s): never down before 60 s, and not a window after the failover (96 s).
    assert downs and 60 <= downs[0] <= 66


# --------------------------------------------------------------------------- the canary loop

REQUESTS_PER_SECOND = 100
WINDOW = 30.0
BUCKETS = (10.0, 100.0, 1000.0)


def rollout_endpoint(revision: str = "rev-1"):
    """Endpoint `scorer`: v1 the default (control), v2 the canary, v3 a shadow; rollout 10 -> 50 -> 100 %."""
    from router.canary import RolloutPolicy
    from router.discovery import DiscoveredEndpoint
    from router.spec import EndpointRoute, VersionShare

    versions = (
        VersionShare("v1", 90, is_default=True, version_type="control"),
        VersionShare("v2", 10),
        VersionShare("v3", 0, mirror_percent=5),
    )
    policy = RolloutPolicy("v1", "v2", (10, 50, 100), WINDOW, 0.05, 1.5, 50, (("v3", 0),), revision)
    return DiscoveredEndpoint(EndpointRoute("scorer", versions=versions), policy, revision, "models/scorer")


class FakeTraffic:
    """Envoy's counters per version cluster as clients see the live split: each second sends REQUESTS_PER_SECOND
    requests by the split the store holds; a version in `failing` answers 5xx, one in `slow` takes 500 ms."""

    def __init__(self, store: MemoryStore):
        self.store, self.failing, self.slow = store, set(), set()
        self.loads: dict = {}
        self.failed = 0  # 5xx answered to clients

    def split(self) -> dict[str, int]:
        entry = self.store.load().traffic.get("models/scorer")
        return dict(entry.split) if entry else {"v1": 90, "v2": 10}

    def second(self) -> None:
        from router.metrics import Load

        for version, percent in self.split().items():
            cluster = f"model-models-{version}"
            seen = self.loads.get(cluster, Load(routers_seen=1, latency_buckets=tuple((b, 0.0) for b in BUCKETS)))
            sent = REQUESTS_PER_SECOND * percent / 100
            errors = sent if version in self.failing else 0
            self.failed += errors
            slowest = 1000.0 if version in self.slow else 10.0
            buckets = tuple((b, n + (sent if b >= slowest else 0)) for b, n in seen.latency_buckets)
            self.loads[cluster] = Load(routers_seen=1, started=seen.started + sent, server_errors=seen.server_errors + errors, latency_buckets=buckets)


def canary_plane(store, traffic, wall, **options):
    from router.controlplane import ControlPlane

    plane = ControlPlane([], RecordingActuator(ready=1), [], clock=lambda: wall[0], wall_clock=lambda: wall[0],
                         collector=lambda urls: dict(traffic.loads), store=store, **options)
    plane.set_endpoints([rollout_endpoint()])
    return plane


def run_seconds(plane, traffic, wall, seconds: int, until=None) -> None:
    for _ in range(seconds):
        wall[0] += 1
        traffic.second()
        plane.tick()
        if until and until():
            return


def test_a_healthy_canary_is_promoted_step_by_step_and_every_decision_is_exported():
    from prometheus_client import generate_latest

    store, wall, renders = MemoryStore(), [1_700_000_000.0], []
    traffic = FakeTraffic(store)
    plane = canary_plane(store, traffic, wall, on_traffic=lambda state: renders.append(dict(state.traffic["models/scorer"].split)))
    plane.tick()  # the rollout starts at its first step
    assert traffic.split() == {"v1": 90, "v2": 10, "v3": 0} and renders == [{"v1": 90, "v2": 10, "v3": 0}]
    seen = []
    for _ in range(3 * int(WINDOW) + 5):
        run_seconds(plane, traffic, wall, 1)
        if traffic.split()["v2"] != (seen[-1] if seen else 10):
            seen.append(traffic.split()["v2"])
    assert seen == [50, 100]  # one step per healthy window, then complete
    entry = store.load().traffic["models/scorer"]
    assert (entry.phase, entry.step, entry.split) == ("completed", 2, (("v1", 0), ("v2", 100), ("v3", 0)))
    assert renders == [{"v1": 90, "v2": 10, "v3": 0}, {"v1": 50, "v2": 50, "v3": 0}, {"v1": 0, "v2": 100, "v3": 0}]
    exported = generate_latest(plane.registry).decode()
    assert 'aksinf_rollout_decisions_total{action="step_up",endpoint="scorer"} 2.0' in exported  # 10 -> 50 -> 100
    assert 'aksinf_rollout_decisions_total{action="roll_back",endpoint="scorer"}' not in exported
    assert 'aksinf_endpoint_traffic_percent{endpoint="scorer",version="v2"} 100.0' in exported
    assert 'aksinf_rollout_step{endpoint="scorer"} 2.0' in exported
    plane.set_endpoints([])  # the endpoint was deleted: its series go
    assert "scorer" not in generate_latest(plane.registry).decode()


def test_a_canary_that_starts_failing_is_rolled_back_within_its_window_and_error_budget(caplog):
    import logging

    store, wall = MemoryStore(), [1_700_000_000.0]
    traffic = FakeTraffic(store)
    plane = canary_plane(store, traffic, wall)
    run_seconds(plane, traffic, wall, int(WINDOW) + 2, until=lambda: traffic.split()["v2"] == 50)
    assert traffic.split()["v2"] == 50
    traffic.failing.add("v2")
    failing_since = wall[0]
    with caplog.at_level(logging.INFO, logger="router.controlplane"):
        run_seconds(plane, traffic, wall, int(WINDOW), until=lambda: traffic.split()["v2"] == 0)
    entry = store.load().traffic["models/scorer"]
    assert entry.phase == "rolled_back" and dict(entry.split) == {"v1": 100, "v2": 0, "v3": 0} and "5xx" in entry.cause
    assert wall[0] - failing_since < WINDOW  # within one analysis window, not at its end
    budget = 0.05 * REQUESTS_PER_SECOND * 0.5 * WINDOW  # the window's error budget at 50 %
    assert 0 < traffic.failed < budget
    assert "roll_back" in caplog.text and "models/scorer" in caplog.text
    run_seconds(plane, traffic, wall, 3 * int(WINDOW))  # sticky until the configuration changes
    assert traffic.split()["v2"] == 0


def test_a_slow_canary_is_rolled_back_on_its_p99():
    store, wall = MemoryStore(), [1_700_000_000.0]
    traffic = FakeTraffic(store)
    traffic.slow.add("v2")
    plane = canary_plane(store, traffic, wall)
    run_seconds(plane, traffic, wall, int(WINDOW), until=lambda: store.load().traffic["models/scorer"].phase == "rolled_back")
    assert "p99" in store.load().traffic["models/scorer"].cause


def test_the_rollout_survives_a_new_leader_and_restarts_on_a_new_revision():
    store, wall = MemoryStore(), [1_700_000_000.0]
    traffic = FakeTraffic(store)
    run_seconds(canary_plane(store, traffic, wall), traffic, wall, int(WINDOW) + 2, until=lambda: traffic.split()["v2"] == 50)
    stepped = store.load().traffic["models/scorer"]
    successor = canary_plane(store, traffic, wall)  # a new leader: nothing in memory
    run_seconds(successor, traffic, wall, 5)
    assert store.load().traffic["models/scorer"] == stepped  # same step, same window start: held, not restarted
    traffic.failing.add("v2")
    run_seconds(successor, traffic, wall, 5)
    assert store.load().traffic["models/scorer"].phase == "rolled_back"
    third = canary_plane(store, traffic, wall)
    run_seconds(third, traffic, wall, 3)
    assert traffic.split()["v2"] == 0  # the rollback holds across leaders
    third.set_endpoints([rollout_endpoint("rev-2")])  # the configuration changed: the stored entry is stale
    run_seconds(third, traffic, wall, 1)
    entry = store.load().traffic["models/scorer"]
    assert (entry.revision, entry.phase, entry.step, traffic.split()["v2"]) == ("rev-2", "progressing", 0, 10)


def test_an_endpoint_without_a_rollout_serves_its_configured_split_with_no_stored_entry():
    from dataclasses import replace

    from prometheus_client import generate_latest

    store, wall = MemoryStore(), [1_700_000_000.0]
    traffic = FakeTraffic(store)
    plane = canary_plane(store, traffic, wall)
    run_seconds(plane, traffic, wall, 2)
    assert "models/scorer" in store.load().traffic
    plane.set_endpoints([replace(rollout_endpoint(), rollout=None)])
    run_seconds(plane, traffic, wall, 1)
    assert store.load().traffic == {}
    assert 'aksinf_endpoint_traffic_percent{endpoint="scorer",version="v1"} 90.0' in generate_latest(plane.registry).decode()
