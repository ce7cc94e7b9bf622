"""The local-process actuator: observed service time re-publishes Envoy's config only when a queue size changes."""

from router.spec import ServiceRoute


def test_observed_latency_resizes_the_queue_only_when_it_changes(tmp_path):
    from local.processes import LocalProcesses, LocalService
    from router.envoy_files import ConfigWriter
    from router.spec import RouterSettings

    settings = RouterSettings(config_dir=tmp_path, listen_port=1, admin_port=2)
    route = ServiceRoute("alpha", auth="none", max_queue_wait_ms=500)
    actuator = LocalProcesses([LocalService(route, lambda port: [])], ConfigWriter(tmp_path), settings, tmp_path / "logs")
    actuator.publish()
    assert route.queue_capacity() == 1  # unknown service time: one queued request per slot
    assert actuator.observe_latency({"alpha": 10.0}) is True  # 10 ms per request: 50 may wait 500 ms
    assert actuator.routes()[0].queue_capacity() == 50
    assert actuator.observe_latency({"alpha": 9.9}) is False  # same queue size (50): nothing rewritten
