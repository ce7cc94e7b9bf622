"""The router's Kubernetes objects as plain data: RBAC rules, NetworkPolicies, pod, Deployment, HPA, PDB,
Service, base URL.

The promise: every function here is pure. The same `StackConfig`, `RouterEnvironment` and image
reference always give the same dicts and strings; nothing is registered, read from the cluster or
the disk, and Pulumi is not imported. components/router_cluster.py only registers what these
return, passing deploy-time values (the pushed image's digest, an Output) in as arguments that are
placed as they are.

Why: the router is the one workload with write access to the cluster and a public address, so its
least-privilege RBAC, network reach, ports, token and TLS mounts and scaling bounds must be easy to
check. As pure functions they are tested directly, schema-validated and without Pulumi mocks
(tests/components/test_router_manifests.py). Container variables come from `RouterEnvironment`
(router/environment.py), the table the control plane reads, so no `AKSINF_*` name is spelled here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from components.model_manifests import (
    MODEL_PORT,
    dns_egress,
    https_egress,
    keys_secret_name,
    model_pods_peer,
    router_pods_peer,
)
from contract.service import ModelService
from contract.stack import StackConfig
from router.discovery import ROUTER_APP, ROUTER_NAMESPACE
from router.environment import RouterEnvironment
from router.state import STATE_CONFIGMAP, STATE_KEY, RouterState, dump_state
from serving.translate import workload_name

TLS_SECRET = f"{ROUTER_APP}-tls"  # the kubernetes.io/tls Secret mounted at RouterEnvironment.tls_dir
API_ACCESS_VOLUME = "kube-api-access"  # the control plane's ServiceAccount token, CA and namespace
# Where the kubernetes client's load_incluster_config() reads `token` and `ca.crt` (and tools read `namespace`).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def router_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": ROUTER_APP, "app.kubernetes.io/part-of": "aks-inference"}


def _router_pods() -> dict[str, str]:
    """The selector for router pods: by name only, as `part-of` is on every aks-inference object."""
    return {"app.kubernetes.io/name": ROUTER_APP}


def namespace_metadata() -> dict:
    return {"name": ROUTER_NAMESPACE, "labels": router_labels()}


def object_metadata(name: str, namespace: str = ROUTER_NAMESPACE) -> dict:
    """Explicit names (no autonaming churn) and the router's labels, in its own namespace unless told."""
    return {"name": name, "namespace": namespace, "labels": router_labels()}


# On the router Deployment when the stack says `tls.allowInsecure: true` and gives no TLS pair: the policy
# pack sees resources, not stack config, and its router-tls-production rule reads the choice here.
TLS_INSECURE_ANNOTATION = "aks-inference/tls-allow-insecure"


def deployment_metadata(config: StackConfig) -> dict:
    """The router Deployment's metadata: `object_metadata`, plus the explicit plain-HTTP choice if made."""
    metadata = object_metadata(ROUTER_APP)
    if config.tls.allow_insecure and not config.tls.enabled:
        metadata["annotations"] = {TLS_INSECURE_ANNOTATION: "true"}
    return metadata


def role_ref() -> dict[str, str]:
    """Every router RoleBinding binds the Role named like the router, in the binding's namespace."""
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER_APP}


def service_account_subjects() -> list[dict[str, str]]:
    return [{"kind": "ServiceAccount", "name": ROUTER_APP, "namespace": ROUTER_NAMESPACE}]


def services_by_namespace(services: Iterable[ModelService]) -> dict[str, list[ModelService]]:
    """The model namespaces in sorted order, each with its services (by name): one router Role per namespace."""
    by_namespace: dict[str, list[ModelService]] = {}
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        by_namespace.setdefault(service.namespace, []).append(service)
    return by_namespace


def model_namespace_rules(services: Sequence[ModelService], scaled: Sequence[ModelService] | None = None) -> list[dict]:
    """The router's rights in the namespace of `services` (what clients call: plain services and endpoints):
    discovery lists Services and EndpointSlices; everything else is named. It reads the keys Secrets of the
    key-auth services by name (no rule when there are none), and reads and scales only the Deployments of
    `scaled` (what runs pods: plain services and endpoint versions; None: `services`): a compromised router
    can neither read other Secrets nor resize other workloads, and is granted no name that does not exist.
    """
    keys_secrets = sorted(name for name in map(keys_secret_name, services) if name)
    deployments = sorted(workload_name(service.name) for service in (services if scaled is None else scaled))
    secrets = [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": keys_secrets, "verbs": ["get"]}] if keys_secrets else []
    return [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        *secrets,
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": deployments, "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": deployments, "verbs": ["get", "patch", "update"]},
    ]


def own_namespace_rules() -> list[dict]:
    """Leader election needs its Lease; peer routers are found through the router Service's EndpointSlices;
    the router-owned state (live splits, autoscaler windows: router/state.py) is read and written in one
    ConfigMap, by name (`state_config_map`)."""
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [STATE_CONFIGMAP], "verbs": ["get", "patch", "update"]},
    ]


def state_config_map() -> dict:
    """The router-owned state's ConfigMap (`metadata` and `data`), declared empty.

    Kubernetes cannot limit `create` to a name (resourceNames does not apply to create:
    https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources), so rather than
    let the router create any ConfigMap in its namespace, the deployer creates this one and the router
    may only get/patch/update it. components/router_cluster.py registers it with ignore_changes on
    `data`: what the router wrote (a rollback, the scale-down windows) is never reset by `pulumi up`."""
    return {"metadata": object_metadata(STATE_CONFIGMAP), "data": {STATE_KEY: dump_state(RouterState())}}


def _tcp(port: int) -> list[dict]:
    return [{"protocol": "TCP", "port": port}]


def network_policies(environment: RouterEnvironment, tls_enabled: bool) -> dict[str, dict]:
    """The router namespace's NetworkPolicies (`metadata` and `spec` each), keyed by what they do.

    Every pod of the namespace starts denied both ways. Router pods then take scoring traffic from
    anywhere (the LoadBalancer keeps client addresses, so no narrower source exists) and status-port
    traffic (`/load` for the leader, `/metrics`, `/ready`) and peer-listener traffic (requests forwarded to a
    service's slot owners, router/ownership.py) only from router pods; Envoy's admin port
    listens on 127.0.0.1 and no policy admits it. Router pods reach only DNS, HTTPS outside the
    instance metadata service (the API server and JWKS hosts), the model pods of
    `environment.model_namespaces` on the model port, and their peers' status and peer ports.
    """
    specs = {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "scoring-from-anywhere": {
            "podSelector": {"matchLabels": _router_pods()},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": _tcp(environment.scoring_port(tls_enabled))}],
        },
        "status-from-router-pods": {
            "podSelector": {"matchLabels": _router_pods()},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [router_pods_peer()], "ports": _tcp(environment.metrics_port)}],
        },
        # The peer listener takes a service's requests from a router that holds none of its slots (router/ownership.py):
        # plain HTTP, so router pods only. The owner authenticates them as on its scoring port.
        "peer-from-router-pods": {
            "podSelector": {"matchLabels": _router_pods()},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [router_pods_peer()], "ports": _tcp(environment.peer_port)}],
        },
        "restricted-egress": {
            "podSelector": {"matchLabels": _router_pods()},
            "policyTypes": ["Egress"],
            "egress": [
                dns_egress(),
                https_egress(),
                {"to": [model_pods_peer(namespace) for namespace in environment.model_namespaces], "ports": _tcp(MODEL_PORT)},
                {"to": [router_pods_peer()], "ports": _tcp(environment.metrics_port) + _tcp(environment.peer_port)},
            ],
        },
    }
    return {purpose: {"metadata": object_metadata(f"{ROUTER_APP}-{purpose}"), "spec": spec} for purpose, spec in specs.items()}


# Envoy's container memory limit, and the heap budget Envoy is told (router/envoy_config.py refuses new
# requests near it): the rest is for memory tcmalloc holds but does not count as heap, so a burst of
# buffered uploads (up to the 100 MB body cap each) is refused instead of OOM-killing the container.
ENVOY_MEMORY_LIMIT_BYTES = 1024 * 2**20
ENVOY_HEAP_BYTES = ENVOY_MEMORY_LIMIT_BYTES * 3 // 4
# Envoy's container CPU limit, in whole cores, and its worker threads: one per core it may use. Envoy's
# default is one worker per hardware thread of the node, e.g. 8 workers on a 2-CPU quota, which the kernel
# throttles in turn while connections spread over workers that cannot all run
# (https://www.envoyproxy.io/docs/envoy/latest/operations/cli#cmdoption-concurrency).
ENVOY_CPU_LIMIT = 2


def router_environment(config: StackConfig, model_namespaces: Sequence[str]) -> RouterEnvironment:
    """What both router containers are told: where the models are, the scoring port TLS implies, token auth,
    and how many router replicas share each service's limits (the number the Deployment starts with)."""
    auth = config.auth
    return RouterEnvironment(
        model_namespaces=tuple(model_namespaces),
        listen_port=RouterEnvironment().scoring_port(config.tls.enabled),
        router_replicas=router_replicas(config),
        envoy_heap_bytes=ENVOY_HEAP_BYTES,
        envoy_concurrency=ENVOY_CPU_LIMIT,
        jwt_issuer=auth.issuer if auth else None,
        jwt_audience=auth.audience if auth else None,
        jwks_uri=auth.jwks_uri if auth else None,
    )


def router_replicas(config: StackConfig) -> int:
    """`router.replicas`, else 3 in production (spread over nodes) and 1 otherwise: the HPA's floor."""
    return config.router.replicas or (3 if config.is_production else 1)


def _volumes_and_mounts(environment: RouterEnvironment, tls_enabled: bool) -> tuple[list[dict], list[dict]]:
    """The pod's volumes, and the mounts both containers share: Envoy's config directory, and the TLS pair
    with TLS. The API access volume is among the volumes but not the shared mounts: only the control plane
    mounts it."""
    volumes = [{"name": "envoy-config", "emptyDir": {}}, api_access_volume()]
    mounts = [{"name": "envoy-config", "mountPath": environment.config_dir}]
    if tls_enabled:
        # A mounted Secret updates in place; Envoy reads it through SDS, so rotation needs no restart.
        volumes.append({"name": "tls", "secret": {"secretName": TLS_SECRET}})
        mounts.append({"name": "tls", "mountPath": environment.tls_dir, "readOnly": True})
    return volumes, mounts


def api_access_volume() -> dict:
    """What Kubernetes would automount, made explicit so that only the control plane gets it: a
    ServiceAccount token the kubelet rotates (the client rereads it every minute), the cluster CA
    and the namespace, laid out as `load_incluster_config()` expects under SERVICE_ACCOUNT_DIR."""
    return {
        "name": API_ACCESS_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }


def _hardened() -> dict:
    """Both containers: no privilege, no writes outside the mounted volumes, no Linux capabilities."""
    return {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def _probes(*, readiness: dict, liveness: dict) -> dict:
    """Readiness every 5 s; liveness from 10 s after start, every 10 s, so a starting container is not restarted."""
    return {
        "readinessProbe": {**readiness, "periodSeconds": 5},
        "livenessProbe": {**liveness, "initialDelaySeconds": 10, "periodSeconds": 10},
    }


def pod_spec(environment: RouterEnvironment, tls_enabled: bool, image: str) -> dict:
    """The router pod: a control plane writing Envoy's config and Envoy serving it, from one image.

    `image` is placed as given in both containers; the deployer passes the pushed digest (an Output).
    Router pods prefer distinct nodes, so one node's loss leaves the others serving. Only the control
    plane talks to the API server, so only it gets the ServiceAccount token: Envoy, which parses
    every request from the internet, holds no credential. The kubelet probes the control plane's
    status port and Envoy's scoring listener (Envoy's admin port listens on loopback only).
    """
    volumes, mounts = _volumes_and_mounts(environment, tls_enabled)
    env = environment.as_env()
    return {
        "serviceAccountName": ROUTER_APP,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": _router_pods()}}}
                ]
            }
        },
        "containers": [
            {
                "name": "control-plane",
                "image": image,
                "args": ["control-plane"],
                "env": env,
                "ports": [{"name": "status", "containerPort": environment.metrics_port}],
                **_probes(
                    readiness={"httpGet": {"path": "/ready", "port": "status"}},
                    liveness={"httpGet": {"path": "/metrics", "port": "status"}},
                ),
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                "securityContext": _hardened(),
                "volumeMounts": [*mounts, {"name": API_ACCESS_VOLUME, "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True}],
            },
            {
                "name": "envoy",
                "image": image,
                # Waits for the bootstrap the control plane writes into the shared directory, then execs Envoy.
                "args": ["envoy"],
                "env": env,
                "ports": [{"name": "scoring", "containerPort": environment.scoring_port(tls_enabled)}],
                **_probes(readiness={"tcpSocket": {"port": "scoring"}}, liveness={"tcpSocket": {"port": "scoring"}}),
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": str(ENVOY_CPU_LIMIT), "memory": f"{ENVOY_MEMORY_LIMIT_BYTES // 2**20}Mi"}},
                "securityContext": _hardened(),
                "volumeMounts": mounts,
            },
        ],
        "volumes": volumes,
    }


# AKS's admission webhook points KUBERNETES_SERVICE_HOST at the API server's FQDN in pods that carry it, so the
# control plane's API calls pass an FQDN firewall rule instead of needing one for the API server's IP
# (https://learn.microsoft.com/azure/aks/outbound-rules-control-egress).
KUBE_SERVICE_HOST_FQDN = "kubernetes.azure.com/set-kube-service-host-fqdn"


def pod_annotations(config: StackConfig) -> dict[str, str]:
    """The router pods' annotations: behind routed egress, reach the API server by its FQDN."""
    return {KUBE_SERVICE_HOST_FQDN: "true"} if config.routes_egress else {}


def deployment_spec(replicas: int, pod: dict, annotations: dict[str, str] | None = None) -> dict:
    """`replicas` is only the starting count: the router's HPA owns it after creation."""
    metadata = {"labels": router_labels(), **({"annotations": annotations} if annotations else {})}
    return {
        "replicas": replicas,
        "selector": {"matchLabels": _router_pods()},
        "template": {"metadata": metadata, "spec": pod},
    }


def hpa_spec(replicas: int) -> dict:
    """CPU-driven, from the configured replicas up to three times as many (models get no HPA: the router scales them)."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ROUTER_APP},
        "minReplicas": replicas,
        "maxReplicas": replicas * 3,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
    }


def pdb_spec(replicas: int) -> dict:
    """A drain takes one router pod at a time, and never the last one."""
    return {"minAvailable": max(1, replicas - 1), "selector": {"matchLabels": _router_pods()}}


def service_annotations(config: StackConfig) -> dict[str, str]:
    """Azure's cloud provider reads these: an internal (VNet-only) LoadBalancer (asked for, or behind routed
    egress: StackConfig.router_service_internal), and the public IP's DNS label."""
    annotations = {}
    if config.router_service_internal:
        annotations["service.beta.kubernetes.io/azure-load-balancer-internal"] = "true"
    # A router published by DNAT has its label on the firewall's public IP instead (components/firewall.py).
    if config.router.dns_label and not config.router_dnat:
        annotations["service.beta.kubernetes.io/azure-dns-label-name"] = config.router.dns_label
    return annotations


def service_spec(tls_enabled: bool) -> dict:
    """443 with TLS, 80 without, to the envoy container's `scoring` port; `Local` keeps the client's source IP."""
    return {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Local",
        "selector": _router_pods(),
        "ports": [{"name": "https" if tls_enabled else "http", "port": 443 if tls_enabled else 80, "targetPort": "scoring"}],
    }


def scoring_base_url(config: StackConfig, load_balancer_ip: str | None = None) -> str | None:
    """Where clients reach the router: the TLS CNAME, else the DNS label's cloudapp.azure.com name, else the
    LoadBalancer's IP. None while only the IP could tell and it is not known yet."""
    scheme = "https" if config.tls.enabled else "http"
    if config.tls.cname:
        return f"{scheme}://{config.tls.cname}"
    if config.router.dns_label:
        return f"{scheme}://{config.router.dns_label}.{config.location}.cloudapp.azure.com"
    if load_balancer_ip:
        return f"{scheme}://{load_balancer_ip}"
    return None
