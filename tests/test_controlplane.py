"""Control-plane parts without a cluster: discovery contract, leader election, metrics over router replicas."""

import base64

import httpx

from router.autoscaler import AutoscaleSettings
from router.discovery import MODEL_SERVICE_LABEL, SERVICE_NAME_LABEL, annotations_for, discover
from router.leader import Conflict, Lease, LeaderElector
from router.metrics import collect, parse_stats
from local.net import free_port
from router.spec import Endpoint, ServiceRoute
from tests.fixtures_router import with_endpoints

AUTOSCALE = AutoscaleSettings(
    min_replicas=2, max_replicas=5, target_utilization=0.6, refresh_seconds=1, scale_down_window_seconds=120,
    max_concurrent=2, fixed_replicas=2,
)


def _service(name="diabetes", namespace="models", labelled=True):
    return {
        "metadata": {
            "name": f"{name}-svc",
            "namespace": namespace,
            "labels": {MODEL_SERVICE_LABEL: "true"} if labelled else {},
            "annotations": annotations_for(
                ServiceRoute(name, namespace, auth="key", scoring_timeout_ms=5000, max_concurrent=2, max_queue_wait_ms=800),
                deployment=f"{name}-deploy", autoscale=AUTOSCALE, keys_secret=f"{name}-keys",
            ),
        }
    }


def test_discovery_reads_the_contract():
    slice_ = {
        "metadata": {"name": "diabetes-svc-abc", "namespace": "models", "labels": {SERVICE_NAME_LABEL: "diabetes-svc"}},
        "ports": [{"name": "http", "port": 5001}, {"name": "metrics", "port": 9000}],
        "endpoints": [
            {"addresses": ["10.244.1.7"], "conditions": {"ready": True}},
            {"addresses": ["10.244.2.9"], "conditions": {"ready": False}},  # not ready: not routed
        ],
    }
    secret = {
        "metadata": {"name": "diabetes-keys", "namespace": "models"},
        "data": {"primaryKey": base64.b64encode(b"p" * 32).decode(), "secondaryKey": base64.b64encode(b"s" * 32).decode()},
    }
    found = discover([_service(), _service("other", labelled=False)], [slice_], [secret])
    assert len(found) == 1
    route = found[0].route
    assert route == ServiceRoute("diabetes", "models", "key", ("p" * 32, "s" * 32), 5000, 2, 800, (Endpoint("10.244.1.7", 5001),))
    assert found[0].deployment == "diabetes-deploy"
    assert found[0].autoscale == AUTOSCALE


class FakeLeases:
    def __init__(self):
        self.lease = None
        self.version = 0

    def get(self):
        return self.lease

    def create(self, lease):
        if self.lease is not None:
            raise Conflict()
        return self._store(lease)

    def replace(self, lease):
        if self.lease is None or lease.version != self.lease.version:
            raise Conflict()
        return self._store(lease)

    def _store(self, lease):
        self.version += 1
        self.lease = Lease(lease.holder, lease.renew_time, lease.duration_seconds, lease.transitions, str(self.version))
        return self.lease


def test_one_leader_renews_and_a_peer_takes_over_after_expiry():
    now = [1000.0]
    api = FakeLeases()
    a = LeaderElector("router-a", api, lambda: now[0], duration_seconds=15)
    b = LeaderElector("router-b", api, lambda: now[0], duration_seconds=15)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    now[0] += 10
    assert a.try_acquire_or_renew() is True  # renewed
    now[0] += 14
    assert b.try_acquire_or_renew() is False  # a renewed 14 s ago: still valid
    now[0] += 2
    assert b.try_acquire_or_renew() is True  # expired: b takes over
    assert api.lease.holder == "router-b" and api.lease.transitions == 1
    assert a.try_acquire_or_renew() is False


def test_a_conflicting_write_means_not_leader():
    class Racing(FakeLeases):
        def replace(self, lease):
            raise Conflict()  # another replica wrote the Lease between our read and our write

    api = Racing()
    api.create(Lease("router-a", 0.0, 15))
    assert LeaderElector("router-b", api, lambda: 100.0).try_acquire_or_renew() is False


def test_parse_stats():
    payload = {"stats": [
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 3},
        {"name": "cluster.model-models-a.upstream_rq_pending_active", "value": 2},
        {"name": "cluster.model-models-b.upstream_rq_active", "value": 1},
    ]}
    assert parse_stats(payload) == {"model-models-a": (3.0, 2.0), "model-models-b": (1.0, 0.0)}


def test_metrics_are_summed_over_router_replicas(envoy_router, fake_model):
    import threading
    import time

    slow = fake_model(delay=1.5)
    route = with_endpoints(ServiceRoute("alpha", auth="none", max_queue_wait_ms=5000, latency_ms=1000), slow)
    first, second = envoy_router([route]), envoy_router([route])
    threads = [
        threading.Thread(target=lambda url=router.url: httpx.post(f"{url}/api/v1/service/alpha/score", content=b"{}", timeout=10))
        for router in (first, second, second)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    dead = f"http://127.0.0.1:{free_port()}"  # a router replica that is down is skipped
    load = collect([f"http://127.0.0.1:{first.settings.admin_port}", f"http://127.0.0.1:{second.settings.admin_port}", dead])
    for thread in threads:
        thread.join()
    alpha = load["model-models-alpha"]
    # One replica slot (per router): 1 active on each router, 1 queued on the second.
    assert (alpha.active, alpha.pending, alpha.routers_seen) == (2.0, 1.0, 2)


def test_kubernetes_scaler_patches_the_scale_subresource_only_on_change():
    from types import SimpleNamespace

    from router.actuators import KubernetesScaler

    class FakeApps:
        def __init__(self):
            self.patches = []

        def read_namespaced_deployment(self, name, namespace):
            # 3 requested, 2 ready: utilization is computed over the ready ones
            return SimpleNamespace(spec=SimpleNamespace(replicas=3), status=SimpleNamespace(ready_replicas=2, replicas=3))

        def patch_namespaced_deployment_scale(self, name, namespace, body):
            self.patches.append((namespace, name, body))

    apps = FakeApps()
    scaler = KubernetesScaler(apps, {"diabetes": ("models", "diabetes")})
    assert scaler.ready_replicas("diabetes") == 2 and scaler.target("diabetes") == 3
    scaler.scale("diabetes", 3)
    assert apps.patches == []
    scaler.scale("diabetes", 4)
    scaler.scale("diabetes", 4)
    assert apps.patches == [("models", "diabetes", {"spec": {"replicas": 4}})]


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


def test_parse_latency_reads_the_median_service_time():
    from router.metrics import parse_latency

    quantiles = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    series = lambda name, median: {"name": name, "values": [{"cumulative": median if q == 50 else 1.0} for q in quantiles]}  # noqa: E731
    payload = {"stats": [
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 0},
        {"histograms": {"supported_quantiles": quantiles, "computed_quantiles": [
            series("cluster.model-models-a.upstream_rq_time", 42.0),
            series("cluster.model-models-a.external.upstream_rq_time", 99.0),
        ]}},
    ]}
    assert parse_latency(payload) == {"model-models-a": 42.0}


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
