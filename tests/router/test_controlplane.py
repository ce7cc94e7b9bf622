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
