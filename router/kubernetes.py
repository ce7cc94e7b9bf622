"""In-cluster control plane: discover model services, write Envoy's files, serve status, and (as leader) scale.

Runs next to Envoy in each router pod, sharing the config directory (an emptyDir).
Discovery polls the API every refresh tick (list calls are cheap at model-service
scale and need no long-lived watches); see router/discovery.py for the contract. Key Secrets are
read one by one, by the names the Services give (`get`, never `list`), so the router's Role can
grant exactly those Secrets. Endpoints (versioned, router/discovery.py) render with the live split
the router-owned store holds (router/state.py; here `ConfigMapStateStore`, the ConfigMap
`aks-inference-router-state`, which every replica reads each round and only the leader writes), so a
canary step or rollback reaches every replica within a round and never waits for a `pulumi up`.
`reconcile_once` is one round of that loop with the API server behind
the small `ClusterApi` protocol and Envoy's admin API behind `EnvoyAdmin`, so tests drive it with
fakes; `main` wires the real clients, starts the status server (router/status.py) and repeats the
round every second. A failed round is logged and the next one retries: the status server, and with
it the pod's readiness, never depends on the API server answering.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NoReturn, Protocol

from router.actuators import KubernetesScaler
from router.controlplane import ControlPlane, ManagedService
from router.discovery import (
    MODEL_SERVICE_LABEL,
    SERVICE_NAME_LABEL,
    DiscoveredEndpoint,
    DiscoveredService,
    discover,
    discover_endpoints,
    named_secrets,
)
from router.environment import RouterEnvironment
from router.envoy_files import ConfigWriter
from router.leader import KubernetesLeases, LeaderElector
from router.metrics import Load
from router.spec import Endpoint, RouterSettings
from router.state import (
    STATE_CONFIGMAP,
    STATE_KEY,
    RouterState,
    StateNotSaved,
    StateStore,
    dump_state,
    live_endpoint_routes,
    live_splits,
    parse_state,
)
from router.status import EnvoyAdmin, HealthReport, LocalEnvoy, StatusServer

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api, DiscoveryV1Api

log = logging.getLogger(__name__)

LEASE_NAME = "aks-inference-autoscaler"
RECONCILE_SECONDS = 1.0
MODEL_SERVICE_SELECTOR = f"{MODEL_SERVICE_LABEL}=true"
STATUS_HOST = "0.0.0.0"  # in a pod: peers, the kubelet and Prometheus reach the status server on the pod IP
LOAD_PATH = "/load"


class ClusterApi(Protocol):
    """What one round reads from the API server: objects as the API's own JSON dicts (the discovery
    contract's input) and the router peers' pod addresses."""

    def model_services(self, namespace: str) -> list[dict]: ...

    def endpoint_slices(self, namespace: str) -> list[dict]: ...

    def model_secret(self, namespace: str, name: str) -> dict | None:
        """The Secret, or None when there is none this replica may read (not created yet, or not granted)."""
        ...

    def router_peer_addresses(self, namespace: str, router_service: str) -> list[str]: ...


def as_api_dict(api_object: object) -> dict:
    """A client object -> the API's own JSON shape (camelCase), which the discovery contract reads."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(api_object)


class KubernetesClusterApi:
    """ClusterApi over the kubernetes client; the label selectors run on the API server."""

    def __init__(self, core: CoreV1Api, discovery: DiscoveryV1Api):
        self.core, self.discovery = core, discovery

    def model_services(self, namespace: str) -> list[dict]:
        return as_api_dict(self.core.list_namespaced_service(namespace, label_selector=MODEL_SERVICE_SELECTOR)).get("items", [])

    def endpoint_slices(self, namespace: str) -> list[dict]:
        return as_api_dict(self.discovery.list_namespaced_endpoint_slice(namespace)).get("items", [])

    def model_secret(self, namespace: str, name: str) -> dict | None:
        """404 (not created yet) and 403 (the Role does not grant this name) both read as no Secret:
        the service then has no keys and refuses every key, and no other service is held up."""
        from kubernetes.client.exceptions import ApiException

        try:
            return as_api_dict(self.core.read_namespaced_secret(name, namespace))
        except ApiException as error:
            if error.status in (403, 404):
                return None
            raise

    def router_peer_addresses(self, namespace: str, router_service: str) -> list[str]:
        """Every ready address in the router Service's EndpointSlices: each replica (its status server serves /load), this one
        included. A starting or terminating replica (ready false) is left out: its peers give it no slot (router/ownership.py)."""
        peers = self.discovery.list_namespaced_endpoint_slice(namespace, label_selector=f"{SERVICE_NAME_LABEL}={router_service}")
        return [address for s in peers.items for e in (s.endpoints or []) if not (e.conditions and e.conditions.ready is False) for address in (e.addresses or [])]


class ConfigMapStateStore:
    """StateStore in the ConfigMap `aks-inference-router-state` (key `state.json`) of the router's namespace.

    The ConfigMap is declared once by the deployer, empty, and never updated by it
    (components/router_manifests.py: `state_config_map`), so the router needs no `create` right, only
    get/patch/update on that one name. A read that fails keeps the state last read (a round never flips
    back to the configured splits for an API-server blip); a missing ConfigMap reads as the empty state.
    Problems are logged when they appear, not every round. `save` patches only when the text changed."""

    def __init__(self, core: CoreV1Api, namespace: str, name: str = STATE_CONFIGMAP):
        self.core, self.namespace, self.name = core, namespace, name
        self._text: str | None = None
        self._state = RouterState()
        self._problem: str | None = None

    def load(self) -> RouterState:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            config_map = self.core.read_namespaced_config_map(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                return self._failed(f"cannot read ConfigMap {self.namespace}/{self.name} ({error.status} {error.reason}); the state last read applies")
            self._failed(f"ConfigMap {self.namespace}/{self.name} does not exist: configured splits serve and nothing is persisted (the deployer creates it)")
            config_map = None
        except (HTTPError, OSError) as error:
            return self._failed(f"cannot read ConfigMap {self.namespace}/{self.name} ({error}); the state last read applies")
        else:
            self._failed(None)
        text = ((config_map.data if config_map else None) or {}).get(STATE_KEY)
        if text != self._text:
            self._text, self._state = text, parse_state(text, f"ConfigMap {self.namespace}/{self.name} {STATE_KEY}")
        return self._state

    def save(self, state: RouterState) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        text = dump_state(state)
        if text == self._text:
            return
        try:
            self.core.patch_namespaced_config_map(self.name, self.namespace, {"data": {STATE_KEY: text}})
        except (ApiException, HTTPError, OSError) as error:
            raise StateNotSaved(f"ConfigMap {self.namespace}/{self.name}: {error}") from error
        self._text, self._state = text, state

    def _failed(self, problem: str | None) -> RouterState:
        if problem and problem != self._problem:
            log.error("%s", problem)
        elif problem is None and self._problem:
            log.info("ConfigMap %s/%s reads again", self.namespace, self.name)
        self._problem = problem
        return self._state


@dataclass(frozen=True)
class Reconciled:
    """What one round found, and whether this replica led it (only the leader scales and decides rollouts)."""

    services: list[DiscoveredService]
    leader: bool
    endpoints: list[DiscoveredEndpoint] = field(default_factory=list)


def reconcile_once(
    api: ClusterApi,
    writer: ConfigWriter,
    elector: LeaderElector,
    plane: ControlPlane,
    scaler: KubernetesScaler,
    settings: RouterSettings,
    environment: RouterEnvironment,
    envoy: EnvoyAdmin,
    health: HealthReport,
    store: StateStore,
) -> Reconciled:
    """One round: report on the last write, discover, read the router-owned state, write this replica's
    Envoy files with the live splits, then scale and decide rollouts if this replica holds the lease.

    Every replica writes its own files (each Envoy serves from them); scaling and canary decisions come
    from the leader alone, from the load every replica's status server reports, and reach the store
    (the others render them next round; the leader at once). Refused services are routed to their
    error answer and never scaled; every version of an endpoint is a service scaled on its own load."""
    if writer.versions:  # written a round ago: Envoy has had ample time to apply it
        health.envoy_config(envoy, writer.versions)
    services: list[dict] = []
    slices: list[dict] = []
    for namespace in environment.model_namespaces:
        services += api.model_services(namespace)
        slices += api.endpoint_slices(namespace)
    secrets = [secret for namespace, name in named_secrets(services) if (secret := api.model_secret(namespace, name)) is not None]
    found = discover(services, slices, secrets)
    endpoints = discover_endpoints(services, secrets, found)
    health.services(found)
    state = store.load()
    # Each replica sizes its queues from the service times its own Envoy observes.
    observed = _own_load(envoy)
    routes = [replace(d.route, latency_ms=observed.get(d.route.cluster_name, Load()).latency_ms) for d in found]
    # With a peer listener, every replica splits each service's cap with the live routers (router/ownership.py).
    peers = api.router_peer_addresses(environment.namespace, environment.router_service) if settings.peer_port else None
    if peers is not None:
        settings = replace(settings, peers=tuple(Endpoint(address, settings.peer_port) for address in peers))
    writer.write(routes, settings, endpoints=live_endpoint_routes(endpoints, state))
    leader = elector.try_acquire_or_renew()
    if leader:
        served = [d for d in found if not d.route.problems]
        scaler.deployments = {d.route.name: (d.route.namespace, d.deployment) for d in served}
        peers = peers if peers is not None else api.router_peer_addresses(environment.namespace, environment.router_service)
        plane.set_services([ManagedService(d.route.name, d.route.cluster_name, d.autoscale, d.route.namespace) for d in served])
        plane.set_endpoints(endpoints)
        plane.load_urls = [f"http://{address}:{environment.metrics_port}{LOAD_PATH}" for address in peers]
        plane.tick(state)
        if live_splits(plane.state) != live_splits(state):  # decided this round: this replica serves it now, the others next round
            writer.write(routes, settings, endpoints=live_endpoint_routes(endpoints, plane.state))
    return Reconciled(found, leader, endpoints)


def _own_load(envoy: EnvoyAdmin) -> dict[str, Load]:
    """This replica's Envoy's load; none observed while it does not answer (queues keep their default size)."""
    try:
        return envoy.load()
    except (OSError, ValueError):
        return {}


def main(environment: RouterEnvironment) -> NoReturn:
    from kubernetes import client, config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config.load_incluster_config()
    api = KubernetesClusterApi(client.CoreV1Api(), client.DiscoveryV1Api())
    # This replica as its peers list it: its pod IP, which the kubelet maps to the pod's host name in /etc/hosts.
    settings = replace(environment.router_settings(), peer_address=socket.gethostbyname(socket.gethostname()))
    writer = ConfigWriter(settings.config_dir)
    writer.write_bootstrap(settings)
    leases = KubernetesLeases(client.CoordinationV1Api(), environment.namespace, LEASE_NAME)
    elector = LeaderElector(socket.gethostname(), leases, time.time)
    scaler = KubernetesScaler(client.AppsV1Api(), {})
    store = ConfigMapStateStore(client.CoreV1Api(), environment.namespace)
    plane = ControlPlane([], scaler, [], store=store)
    envoy = LocalEnvoy(settings.admin_port)
    health = HealthReport(plane.registry)
    StatusServer((STATUS_HOST, environment.metrics_port), plane.registry, envoy, writer).start()
    while True:
        try:
            reconcile_once(api, writer, elector, plane, scaler, settings, environment, envoy, health, store)
        except Exception:  # an API-server blip or a bug in one round must not take the status server down with it
            log.exception("reconcile round failed; Envoy keeps serving its last config and the next round retries")
        time.sleep(RECONCILE_SECONDS)
