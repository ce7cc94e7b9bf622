"""One round of the in-cluster loop, driven with fakes: a fake API server and Envoy admin API, a real
ConfigWriter on disk, a real LeaderElector over a fake Lease store, a real ControlPlane and
KubernetesScaler over a fake apps API, the real HealthReport on the plane's registry, and the router-owned
state in memory (the ConfigMap store itself over a fake core API)."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from router.actuators import KubernetesScaler
from router.autoscaler import AutoscaleSettings
from router.canary import RolloutPolicy
from router.controlplane import ControlPlane
from router.discovery import (
    ENDPOINT_LABEL,
    KEYS_SECRET,
    MAX_CONCURRENT,
    MODEL_SERVICE_LABEL,
    SERVICE_NAME_LABEL,
    annotations_for,
    discover,
    endpoint_annotations,
    named_secrets,
)
from router.environment import RouterEnvironment
from router.envoy_files import ConfigWriter, read_dynamic_file
from router.kubernetes import ConfigMapStateStore, KubernetesClusterApi, Reconciled, reconcile_once
from router.leader import LeaderElector, Lease
from router.metrics import Load
from router.spec import Endpoint, EndpointRoute, RouterSettings, ServiceRoute, VersionShare
from router.state import RouterState, StateNotSaved, TrafficEntry, parse_state
from router.status import HealthReport, Subscription
from tests.router.test_controlplane import MemoryStore
from tests.router.test_leader import FakeLeases

NOW = 1000.0
ADMIN_PORT = 9901
METRICS_PORT = 9090
ENVIRONMENT = RouterEnvironment(
    model_namespaces=("models", "vision"), namespace="aks-inference", router_service="aks-inference-router",
    admin_port=ADMIN_PORT, metrics_port=METRICS_PORT,
)
AUTOSCALE = AutoscaleSettings(min_replicas=2, max_replicas=5, max_concurrent=2, fixed_replicas=2)
ROLLOUT = RolloutPolicy("", "", (10, 50, 100), 60.0, 0.05, 1.5, 100)  # control and treatment come from the versions
PRIMARY_KEY = "p" * 32


def model_objects(name: str, namespace: str, address: str, endpoint: str | None = None) -> tuple[dict, dict]:
    """A model Service (key auth, 2 requests per replica, 800 ms queue wait) and its EndpointSlice, one ready replica."""
    route = ServiceRoute(name, namespace, auth="key", max_concurrent=2, max_queue_wait_ms=800, endpoint=endpoint)
    service = {
        "metadata": {
            "name": f"{name}-svc",
            "namespace": namespace,
            "labels": {MODEL_SERVICE_LABEL: "true"},
            "annotations": annotations_for(route, deployment=f"{name}-deploy", autoscale=AUTOSCALE, keys_secret=f"{name}-keys"),
        }
    }
    endpoint_slice = {
        "metadata": {"name": f"{name}-svc-abc", "namespace": namespace, "labels": {SERVICE_NAME_LABEL: f"{name}-svc"}},
        "ports": [{"name": "http", "port": 5001}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }
    return service, endpoint_slice


def keys_secret(name: str, namespace: str) -> dict:
    return {"metadata": {"name": f"{name}-keys", "namespace": namespace}, "data": {"primaryKey": base64.b64encode(PRIMARY_KEY.encode()).decode()}}


class FakeCluster:
    """ClusterApi over in-memory objects per namespace; records every read, in order."""

    def __init__(self):
        self.services: dict[str, list[dict]] = {}
        self.slices: dict[str, list[dict]] = {}
        self.secrets: dict[tuple[str, str], dict] = {}
        self.peers: dict[tuple[str, str], list[str]] = {}
        self.reads: list[tuple[str, ...]] = []

    def add_endpoint(self, name: str, namespace: str, rollout: RolloutPolicy | None = ROLLOUT) -> None:
        """Endpoint `name`: versions v1 (the default, control) and v2 (a 10 % treatment), each a model service of
        its own, and the endpoint Service (no selector, no EndpointSlice) naming the endpoint's key Secret."""
        self.add_model(f"{name}-v1", namespace, "10.244.3.1", endpoint=name)
        self.add_model(f"{name}-v2", namespace, "10.244.3.2", endpoint=name)
        versions = (VersionShare(f"{name}-v1", 90, is_default=True, version_type="control"), VersionShare(f"{name}-v2", 10))
        annotations = endpoint_annotations(EndpointRoute(name, namespace, versions=versions), keys_secret=f"{name}-keys", rollout=rollout)
        labels = {MODEL_SERVICE_LABEL: "true", ENDPOINT_LABEL: "true"}
        self.services[namespace].append({"metadata": {"name": f"{name}-svc", "namespace": namespace, "labels": labels, "annotations": annotations}})
        self.secrets[(namespace, f"{name}-keys")] = keys_secret(name, namespace)

    def add_model(self, name: str, namespace: str, address: str, endpoint: str | None = None, **annotations: str) -> None:
        service, endpoint_slice = model_objects(name, namespace, address, endpoint)
        service["metadata"]["annotations"].update(annotations)
        self.services.setdefault(namespace, []).append(service)
        self.slices.setdefault(namespace, []).append(endpoint_slice)
        self.secrets[(namespace, f"{name}-keys")] = keys_secret(name, namespace)

    def remove_model(self, name: str, namespace: str) -> None:
        self.services[namespace] = [s for s in self.services[namespace] if s["metadata"]["name"] != f"{name}-svc"]
        self.slices[namespace] = [s for s in self.slices[namespace] if s["metadata"]["labels"][SERVICE_NAME_LABEL] != f"{name}-svc"]

    def model_services(self, namespace: str) -> list[dict]:
        self.reads.append(("services", namespace))
        return self.services.get(namespace, [])

    def endpoint_slices(self, namespace: str) -> list[dict]:
        self.reads.append(("slices", namespace))
        return self.slices.get(namespace, [])

    def model_secret(self, namespace: str, name: str) -> dict | None:
        self.reads.append(("secret", namespace, name))
        return self.secrets.get((namespace, name))

    def router_peer_addresses(self, namespace: str, router_service: str) -> list[str]:
        self.reads.append(("peers", namespace, router_service))
        return self.peers.get((namespace, router_service), [])


class FakeApps:
    """AppsV1Api: every Deployment asks for 1 replica and has 1 ready; patches are recorded."""

    def __init__(self):
        self.reads: list[tuple[str, str]] = []
        self.patches: list[tuple[str, str, dict]] = []

    def read_namespaced_deployment(self, name: str, namespace: str) -> SimpleNamespace:
        self.reads.append((namespace, name))
        return SimpleNamespace(spec=SimpleNamespace(replicas=1), status=SimpleNamespace(ready_replicas=1))

    def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: dict) -> None:
        self.patches.append((namespace, name, body))


@dataclass
class FakeEnvoy:
    """EnvoyAdmin: this replica's Envoy reports `own_load`, and serves what was written unless `rejecting`."""

    writer: ConfigWriter
    own_load: dict[str, Load] = field(default_factory=dict)
    rejecting: set[str] = field(default_factory=set)
    load_reads: int = 0

    def ready(self) -> bool:
        return True

    def load(self) -> dict[str, Load]:
        self.load_reads += 1
        return self.own_load

    def subscriptions(self) -> dict[str, Subscription]:
        return {
            file: Subscription("previous", 1) if file in self.rejecting else Subscription(version, 0)
            for file, version in self.writer.versions.items()
        }


@dataclass
class RouterReplica:
    """One router replica's control plane, with its Envoy's admin API faked."""

    config_dir: Path
    leases: FakeLeases
    api: FakeCluster = field(default_factory=FakeCluster)
    apps: FakeApps = field(default_factory=FakeApps)
    plane_reads: list[list[str]] = field(default_factory=list)
    store: MemoryStore = field(default_factory=MemoryStore)

    def __post_init__(self):
        self.settings = RouterSettings(config_dir=self.config_dir, listen_port=8080, admin_port=ADMIN_PORT)
        self.writer = ConfigWriter(self.config_dir)
        self.envoy = FakeEnvoy(self.writer)
        self.elector = LeaderElector("router-a", self.leases, lambda: NOW)
        self.scaler = KubernetesScaler(self.apps, {})
        self.plane = ControlPlane([], self.scaler, [], clock=lambda: NOW, wall_clock=lambda: NOW, collector=self._every_replica, store=self.store)
        self.health = HealthReport(self.plane.registry)

    def _every_replica(self, load_urls: list[str]) -> dict[str, Load]:
        self.plane_reads.append(load_urls)
        return {}

    def reconcile(self) -> Reconciled:
        return reconcile_once(
            self.api, self.writer, self.elector, self.plane, self.scaler, self.settings, ENVIRONMENT, self.envoy, self.health, self.store
        )

    def metrics(self) -> str:
        return generate_latest(self.plane.registry).decode()

    def clusters(self) -> dict[str, dict]:
        return {c["name"]: c for c in read_dynamic_file(self.config_dir / "cds.pb")["resources"]}

    def routes(self) -> dict[str, dict]:
        return {r["name"]: r for r in read_dynamic_file(self.config_dir / "rds.pb")["resources"][0]["virtual_hosts"][0]["routes"]}

    def routed_clusters(self) -> set[str]:
        return {r["route"]["cluster"] for r in self.routes().values() if "route" in r and "cluster" in r["route"]}

    def endpoint_split(self) -> dict[str, int]:
        """cluster -> weight of the (one) weighted route: the split Envoy applies to the endpoint's clients."""
        (weighted,) = [r["route"]["weighted_clusters"] for r in self.routes().values() if "weighted_clusters" in r.get("route", {})]
        return {c["name"]: c["weight"] for c in weighted["clusters"]}


def endpoints(cluster: dict) -> list[str]:
    return [
        f"{e['endpoint']['address']['socket_address']['address']}:{e['endpoint']['address']['socket_address']['port_value']}"
        for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]
    ]


def queue_capacity(cluster: dict) -> int:
    return cluster["circuit_breakers"]["thresholds"][0]["max_pending_requests"]


@pytest.fixture
def leader(tmp_path) -> RouterReplica:
    return RouterReplica(tmp_path, FakeLeases())  # no Lease yet: the first round takes it


@pytest.fixture
def follower(tmp_path) -> RouterReplica:
    leases = FakeLeases()
    leases.create(Lease("router-b", NOW, 15))  # another replica renewed it just now
    return RouterReplica(tmp_path, leases)


def test_discovered_services_of_every_model_namespace_are_written_for_envoy(follower):
    follower.api.add_model("diabetes", "models", "10.244.1.7")
    follower.api.add_model("digits", "vision", "10.244.2.9")
    result = follower.reconcile()
    assert [d.route.cluster_name for d in result.services] == ["model-models-diabetes", "model-vision-digits"]
    assert follower.api.reads == [
        ("services", "models"), ("slices", "models"), ("services", "vision"), ("slices", "vision"),
        ("secret", "models", "diabetes-keys"), ("secret", "vision", "digits-keys"),  # by name: never a list of Secrets
    ]
    clusters = follower.clusters()
    assert endpoints(clusters["model-models-diabetes"]) == ["10.244.1.7:5001"]
    assert endpoints(clusters["model-vision-digits"]) == ["10.244.2.9:5001"]
    assert follower.routed_clusters() == {"model-models-diabetes", "model-vision-digits"}
    assert PRIMARY_KEY.encode() in (follower.config_dir / "rds.pb").read_bytes()  # the key Secret reached the route


def test_service_time_seen_by_this_replicas_envoy_sizes_the_queue(follower):
    follower.api.add_model("diabetes", "models", "10.244.1.7")
    follower.reconcile()
    # Nothing measured yet: a fast service is assumed (1 ms), 2 slots * 800 ms allowed in the queue / 1 ms.
    assert queue_capacity(follower.clusters()["model-models-diabetes"]) == 1600
    follower.envoy.own_load = {"model-models-diabetes": Load(latency_ms=200.0)}
    follower.reconcile()
    # 2 slots, 200 ms per request, 800 ms allowed in the queue: 2 * 800 / 200.
    assert queue_capacity(follower.clusters()["model-models-diabetes"]) == 8
    assert follower.envoy.load_reads == 2 and follower.plane_reads == []  # its own Envoy only, not the peers'


def test_the_leader_scales_the_discovered_deployments_from_every_peers_load(leader):
    leader.api.add_model("diabetes", "models", "10.244.1.7")
    leader.api.peers[("aks-inference", "aks-inference-router")] = ["10.0.0.1", "10.0.0.2"]
    assert leader.reconcile().leader is True
    assert leader.scaler.deployments == {"diabetes": ("models", "diabetes-deploy")}
    assert [s.cluster for s in leader.plane.services] == ["model-models-diabetes"]
    # Peers' load from their status servers, never from their Envoy admin API (which answers on loopback only).
    assert leader.plane_reads == [[f"http://10.0.0.1:{METRICS_PORT}/load", f"http://10.0.0.2:{METRICS_PORT}/load"]]
    assert leader.apps.reads == [("models", "diabetes-deploy")]
    # 1 replica running, no load: the autoscaler's minimum of 2 is applied to the discovered Deployment.
    assert leader.apps.patches == [("models", "diabetes-deploy", {"spec": {"replicas": 2}})]


def test_a_replica_without_the_lease_routes_but_scales_nothing(follower):
    follower.api.add_model("diabetes", "models", "10.244.1.7")
    follower.api.peers[("aks-inference", "aks-inference-router")] = ["10.0.0.1", "10.0.0.2"]
    assert follower.reconcile().leader is False
    assert "model-models-diabetes" in follower.clusters()
    assert follower.scaler.deployments == {} and follower.plane.services == []
    assert follower.plane_reads == [] and follower.apps.reads == [] and follower.apps.patches == []
    assert not any(read[0] == "peers" for read in follower.api.reads)


def test_a_service_that_disappears_leaves_envoys_files_and_the_control_plane(leader):
    leader.api.add_model("diabetes", "models", "10.244.1.7")
    leader.api.add_model("iris", "models", "10.244.1.8")
    leader.reconcile()
    assert {"model-models-diabetes", "model-models-iris"} <= set(leader.clusters())
    leader.api.remove_model("iris", "models")
    result = leader.reconcile()
    assert [d.route.name for d in result.services] == ["diabetes"]
    assert set(leader.clusters()) == {"model-models-diabetes"}
    assert leader.routed_clusters() == {"model-models-diabetes"}
    assert [s.name for s in leader.plane.services] == ["diabetes"]
    assert leader.scaler.deployments == {"diabetes": ("models", "diabetes-deploy")}


def test_secrets_are_read_by_the_names_services_give_and_a_missing_one_fails_closed(follower):
    """Only the Secrets the model Services name are read (so the Role can grant `get` on exactly those);
    a Service without the annotation costs no read, and a named Secret that does not exist yet leaves its
    key service refusing every key."""
    follower.api.add_model("diabetes", "models", "10.244.1.7")
    follower.api.add_model("iris", "models", "10.244.1.8", **{KEYS_SECRET: "iris-keys-next"})  # not created yet
    open_service, open_slice = model_objects("open", "models", "10.244.1.9")
    del open_service["metadata"]["annotations"][KEYS_SECRET]
    follower.api.services["models"].append(open_service)
    follower.api.slices["models"].append(open_slice)
    follower.api.secrets[("models", "unrelated")] = keys_secret("unrelated", "models")
    follower.reconcile()
    secret_reads = [read for read in follower.api.reads if read[0] == "secret"]
    assert secret_reads == [("secret", "models", "diabetes-keys"), ("secret", "models", "iris-keys-next")]
    routes = follower.routes()
    assert [c["key"] for c in routes["diabetes"]["typed_per_filter_config"]["envoy.filters.http.api_key_auth"]["credentials"]] == [PRIMARY_KEY]
    assert routes["iris"]["typed_per_filter_config"]["envoy.filters.http.api_key_auth"].get("credentials", []) == []  # no key opens it (an empty list is absent in proto)


def test_a_malformed_service_is_refused_logged_once_and_counted_while_the_others_are_served(leader, caplog):
    leader.api.add_model("diabetes", "models", "10.244.1.7")
    leader.api.add_model("broken", "models", "10.244.1.8", **{MAX_CONCURRENT: "lots"})
    leader.api.peers[("aks-inference", "aks-inference-router")] = ["10.0.0.1"]
    caplog.set_level(logging.INFO, logger="router.status")
    found = leader.reconcile().services  # never an exception out of the round
    leader.reconcile()
    assert [(d.route.name, bool(d.route.problems)) for d in found] == [("broken", True), ("diabetes", False)]
    assert set(leader.clusters()) == {"model-models-diabetes"}  # the refused service has no cluster...
    refusal = leader.routes()["broken"]["direct_response"]  # ...only its JSON 503 naming the problem
    assert refusal["status"] == 503 and "aks-inference/max-concurrent='lots' is not a whole number" in refusal["body"]["inline_string"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Service models/broken-svc is refused (not routed, not scaled): aks-inference/max-concurrent='lots' is not a whole number"]
    assert 'aksinf_rejected_services{namespace="models",service="broken-svc"} 1.0' in leader.metrics()
    assert leader.scaler.deployments == {"diabetes": ("models", "diabetes-deploy")}  # never scaled
    assert [s.name for s in leader.plane.services] == ["diabetes"]

    leader.api.services["models"][1]["metadata"]["annotations"][MAX_CONCURRENT] = "2"  # fixed
    leader.reconcile()
    assert "model-models-broken" in leader.clusters()
    assert "aksinf_rejected_services{" not in leader.metrics()
    assert "Service models/broken-svc is no longer refused (served, or gone)" in caplog.text


def test_a_config_file_envoy_did_not_apply_is_exported_and_logged_a_round_later(follower, caplog):
    follower.api.add_model("diabetes", "models", "10.244.1.7")
    follower.envoy.rejecting = {"cds.pb"}
    caplog.set_level(logging.INFO, logger="router.status")
    follower.reconcile()
    assert "aksinf_envoy_config_rejected{" not in follower.metrics()  # nothing to judge before a write has had time
    follower.reconcile()
    follower.reconcile()
    assert 'aksinf_envoy_config_rejected{file="cds.pb"} 1.0' in follower.metrics()
    assert 'aksinf_envoy_config_rejected{file="rds.pb"} 0.0' in follower.metrics()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("Envoy rejected cds.pb (it serves version previous, the file holds ")
    follower.envoy.rejecting = set()
    follower.reconcile()
    assert 'aksinf_envoy_config_rejected{file="cds.pb"} 0.0' in follower.metrics()


def test_the_real_cluster_api_selects_labelled_objects_reads_secrets_by_name_and_hands_discovery_the_apis_json_shape():
    from kubernetes.client import (
        DiscoveryV1EndpointPort,
        V1Endpoint,
        V1EndpointConditions,
        V1EndpointSlice,
        V1EndpointSliceList,
        V1ObjectMeta,
        V1Secret,
        V1Service,
        V1ServiceList,
    )
    from kubernetes.client.exceptions import ApiException

    service, _ = model_objects("diabetes", "models", "10.244.1.7")
    calls = []

    def endpoint_slice(service_name: str, address: str) -> V1EndpointSlice:
        return V1EndpointSlice(
            address_type="IPv4",
            metadata=V1ObjectMeta(name=f"{service_name}-abc", namespace="models", labels={SERVICE_NAME_LABEL: service_name}),
            ports=[DiscoveryV1EndpointPort(name="http", port=5001)],
            endpoints=[V1Endpoint(addresses=[address], conditions=V1EndpointConditions(ready=True))],
        )

    class Core:
        """Has no list_namespaced_secret: the Role grants no `list` on Secrets."""

        def list_namespaced_service(self, namespace, label_selector=None):
            calls.append(("services", namespace, label_selector))
            return V1ServiceList(items=[V1Service(metadata=V1ObjectMeta(**service["metadata"]))])

        def read_namespaced_secret(self, name, namespace):
            calls.append(("secret", namespace, name))
            statuses = {"not-created": 404, "not-granted": 403, "api-down": 500}
            if name in statuses:
                raise ApiException(status=statuses[name])
            # string_data is stringData in the API's JSON, the only spelling discovery reads
            return V1Secret(metadata=V1ObjectMeta(name=name, namespace=namespace), string_data={"primaryKey": PRIMARY_KEY})

    class Discovery:
        def list_namespaced_endpoint_slice(self, namespace, label_selector=None):
            calls.append(("slices", namespace, label_selector))
            if label_selector:
                return V1EndpointSliceList(items=[endpoint_slice("aks-inference-router", "10.0.0.1"), endpoint_slice("aks-inference-router", "10.0.0.2")])
            return V1EndpointSliceList(items=[endpoint_slice("diabetes-svc", "10.244.1.7")])

    api = KubernetesClusterApi(Core(), Discovery())
    services = api.model_services("models")
    assert named_secrets(services) == [("models", "diabetes-keys")]
    secrets = [api.model_secret(namespace, name) for namespace, name in named_secrets(services)]
    found = discover(services, api.endpoint_slices("models"), secrets)
    assert [(d.route.name, d.route.endpoints, d.route.keys) for d in found] == [("diabetes", (Endpoint("10.244.1.7", 5001),), (PRIMARY_KEY,))]
    assert api.model_secret("models", "not-created") is None and api.model_secret("models", "not-granted") is None
    with pytest.raises(ApiException):
        api.model_secret("models", "api-down")  # anything else fails the round, which the next one retries
    assert api.router_peer_addresses("aks-inference", "aks-inference-router") == ["10.0.0.1", "10.0.0.2"]
    assert calls == [
        ("services", "models", f"{MODEL_SERVICE_LABEL}=true"),
        ("secret", "models", "diabetes-keys"),
        ("slices", "models", None),
        ("secret", "models", "not-created"),
        ("secret", "models", "not-granted"),
        ("secret", "models", "api-down"),
        ("slices", "aks-inference", f"{SERVICE_NAME_LABEL}=aks-inference-router"),
    ]


# --------------------------------------------------------------------------- endpoints and the router-owned state


def test_every_replica_renders_the_live_split_the_store_holds_for_the_endpoints_revision(follower):
    follower.api.add_endpoint("scorer", "models")
    endpoint = follower.reconcile().endpoints[0]
    assert not endpoint.route.problems and endpoint.rollout is not None
    assert follower.endpoint_split() == {"model-models-scorer-v1": 90, "model-models-scorer-v2": 10}  # nothing stored: configured
    live = TrafficEntry(endpoint.revision, (("scorer-v1", 0), ("scorer-v2", 100)), "completed", 2, NOW - 10)
    follower.store.save(RouterState({"models/scorer": live}))
    follower.reconcile()
    assert follower.endpoint_split() == {"model-models-scorer-v2": 100}  # a follower reads the store every round
    follower.store.save(RouterState({"models/scorer": TrafficEntry("older", (("scorer-v1", 100), ("scorer-v2", 0)), "rolled_back", 0, NOW)}))
    follower.reconcile()
    assert follower.endpoint_split() == {"model-models-scorer-v1": 90, "model-models-scorer-v2": 10}  # another revision: dropped
    assert follower.plane.services == [] and follower.store.writes == 2  # a follower decides and writes nothing


def test_the_leader_starts_the_rollout_renders_it_at_once_and_scales_each_version(leader):
    leader.api.add_endpoint("scorer", "models")
    leader.api.peers[("aks-inference", "aks-inference-router")] = ["10.0.0.1"]
    assert leader.reconcile().leader is True
    entry = parse_state(leader.store.text, "test").traffic["models/scorer"]
    assert (entry.phase, entry.step, dict(entry.split)) == ("progressing", 0, {"scorer-v1": 90, "scorer-v2": 10})
    assert leader.endpoint_split() == {"model-models-scorer-v1": 90, "model-models-scorer-v2": 10}
    # Versions are services: each scaled on its own load, its own Deployment; the endpoint Service has none.
    assert leader.scaler.deployments == {"scorer-v1": ("models", "scorer-v1-deploy"), "scorer-v2": ("models", "scorer-v2-deploy")}
    assert set(parse_state(leader.store.text, "test").autoscaler) == {"models/scorer-v1", "models/scorer-v2"}
    assert 'aksinf_endpoint_traffic_percent{endpoint="scorer",version="scorer-v2"} 10.0' in leader.metrics()


def test_the_leader_applies_a_rollback_it_decides_in_the_same_round(leader):
    """A failing canary: the leader's round decides the rollback, stores it and serves it before the round ends."""
    leader.api.add_endpoint("scorer", "models")
    counters = {"model-models-scorer-v1": Load(routers_seen=1), "model-models-scorer-v2": Load(routers_seen=1)}
    leader.plane.collector = lambda urls: dict(counters)
    leader.reconcile()  # the rollout starts; the window's first reading
    assert leader.endpoint_split() == {"model-models-scorer-v1": 90, "model-models-scorer-v2": 10}
    counters["model-models-scorer-v1"] = Load(routers_seen=1, started=900)
    counters["model-models-scorer-v2"] = Load(routers_seen=1, started=100, server_errors=60)
    leader.reconcile()
    entry = parse_state(leader.store.text, "test").traffic["models/scorer"]
    assert entry.phase == "rolled_back" and leader.endpoint_split() == {"model-models-scorer-v1": 100}


class FakeCore:
    """CoreV1Api's ConfigMap calls: `status` makes reads fail; patches are recorded and applied."""

    def __init__(self, data: dict | None = None):
        self.data, self.status, self.patches = data, None, []

    def read_namespaced_config_map(self, name, namespace):
        from kubernetes.client.exceptions import ApiException

        if self.status or self.data is None:
            raise ApiException(status=self.status or 404, reason="Forbidden" if self.status == 403 else "Not Found")
        return SimpleNamespace(data=dict(self.data))

    def patch_namespaced_config_map(self, name, namespace, body):
        from kubernetes.client.exceptions import ApiException

        if self.status:
            raise ApiException(status=self.status)
        self.patches.append((namespace, name, body))
        self.data = {**(self.data or {}), **body["data"]}


def test_the_config_map_store_reads_keeps_the_last_state_on_errors_and_patches_only_changes(caplog):
    state = RouterState({"models/scorer": TrafficEntry("r", (("v1", 100), ("v2", 0)), "rolled_back", 1, NOW, "5xx")})
    core = FakeCore()
    store = ConfigMapStateStore(core, "aks-inference")
    with caplog.at_level(logging.ERROR, logger="router.kubernetes"):
        assert store.load() == RouterState()  # not created: empty, logged once
        store.load()
    assert caplog.text.count("does not exist") == 1
    core.data = {"state.json": '{"autoscaler":{},"traffic":{}}'}  # as the deployer declares it
    store.save(state)
    store.save(state)
    assert core.patches == [("aks-inference", "aks-inference-router-state", {"data": {"state.json": core.data["state.json"]}})]
    assert ConfigMapStateStore(core, "aks-inference").load() == state
    core.status = 500
    assert store.load() == state  # an API-server blip: the state last read, never the configured splits
    with pytest.raises(StateNotSaved):
        store.save(RouterState())
    core.status = None
    core.data = {"state.json": "{broken"}
    assert store.load() == RouterState()  # corrupt: empty, never an exception
