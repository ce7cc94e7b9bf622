"""The router's Kubernetes objects as plain data: RBAC rules, pod, Deployment, HPA, PDB, Service, base URL.

The promise: every function here is pure. The same `StackConfig`, `RouterEnvironment` and image
reference always give the same dicts and strings; nothing is registered, read from the cluster or
the disk, and Pulumi is not imported. components/router_cluster.py only registers what these
return, passing deploy-time values (the pushed image's digest, an Output) in as arguments that are
placed as they are.

Why: the router is the one workload with write access to the cluster and a public address, so its
least-privilege RBAC, ports, TLS mount and scaling bounds must be easy to check. As pure functions
they are tested directly, schema-validated and without Pulumi mocks
(tests/components/test_router_manifests.py). Container variables come from `RouterEnvironment`
(router/environment.py), the table the control plane reads, so no `AKSINF_*` name is spelled here.
"""

from __future__ import annotations

from collections.abc import Sequence

from contract.stack import StackConfig
from router.discovery import ROUTER_APP, ROUTER_NAMESPACE
from router.environment import RouterEnvironment

TLS_SECRET = f"{ROUTER_APP}-tls"  # the kubernetes.io/tls Secret mounted at RouterEnvironment.tls_dir


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


def role_ref() -> dict[str, str]:
    """Every router RoleBinding binds the Role named like the router, in the binding's namespace."""
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER_APP}


def service_account_subjects() -> list[dict[str, str]]:
    return [{"kind": "ServiceAccount", "name": ROUTER_APP, "namespace": ROUTER_NAMESPACE}]


def model_namespace_rules() -> list[dict]:
    """Read what discovery needs, write only the scale subresource."""
    return [
        {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
    ]


def own_namespace_rules() -> list[dict]:
    """Leader election needs its Lease; peer routers are found through the router Service's EndpointSlices."""
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
    ]


def router_environment(config: StackConfig, model_namespaces: Sequence[str]) -> RouterEnvironment:
    """What both router containers are told: where the models are, the scoring port TLS implies, token auth."""
    auth = config.auth
    return RouterEnvironment(
        model_namespaces=tuple(model_namespaces),
        listen_port=RouterEnvironment().scoring_port(config.tls.enabled),
        jwt_issuer=auth.issuer if auth else None,
        jwt_audience=auth.audience if auth else None,
        jwks_uri=auth.jwks_uri if auth else None,
    )


def router_replicas(config: StackConfig) -> int:
    """`router.replicas`, else 3 in production (spread over nodes) and 1 otherwise: the HPA's floor."""
    return config.router.replicas or (3 if config.is_production else 1)


def _volumes_and_mounts(environment: RouterEnvironment, tls_enabled: bool) -> tuple[list[dict], list[dict]]:
    """The pod's volumes and the mounts both containers share: Envoy's config directory, and the TLS pair with TLS."""
    volumes = [{"name": "envoy-config", "emptyDir": {}}]
    mounts = [{"name": "envoy-config", "mountPath": environment.config_dir}]
    if tls_enabled:
        # A mounted Secret updates in place; Envoy reads it through SDS, so rotation needs no restart.
        volumes.append({"name": "tls", "secret": {"secretName": TLS_SECRET}})
        mounts.append({"name": "tls", "mountPath": environment.tls_dir, "readOnly": True})
    return volumes, mounts


def _hardened() -> dict:
    """Both containers: no privilege, no writes outside the mounted volumes, no Linux capabilities."""
    return {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def pod_spec(environment: RouterEnvironment, tls_enabled: bool, image: str) -> dict:
    """The router pod: a control plane writing Envoy's config and Envoy serving it, from one image.

    `image` is placed as given in both containers; the deployer passes the pushed digest (an Output).
    Router pods prefer distinct nodes, so one node's loss leaves the others serving.
    """
    volumes, mounts = _volumes_and_mounts(environment, tls_enabled)
    env = environment.as_env()
    return {
        "serviceAccountName": ROUTER_APP,
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
                "ports": [{"name": "metrics", "containerPort": environment.metrics_port}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                "securityContext": _hardened(),
                "volumeMounts": mounts,
            },
            {
                "name": "envoy",
                "image": image,
                # Waits for the bootstrap the control plane writes into the shared directory, then execs Envoy.
                "args": ["envoy"],
                "env": env,
                "ports": [
                    {"name": "scoring", "containerPort": environment.scoring_port(tls_enabled)},
                    {"name": "admin", "containerPort": environment.admin_port},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin"}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/ready", "port": "admin"}, "initialDelaySeconds": 10, "periodSeconds": 10},
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                "securityContext": _hardened(),
                "volumeMounts": mounts,
            },
        ],
        "volumes": volumes,
    }


def deployment_spec(replicas: int, pod: dict) -> dict:
    """`replicas` is only the starting count: the router's HPA owns it after creation."""
    return {
        "replicas": replicas,
        "selector": {"matchLabels": _router_pods()},
        "template": {"metadata": {"labels": router_labels()}, "spec": pod},
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
    """Azure's cloud provider reads these: an internal (VNet-only) LoadBalancer, and the public IP's DNS label."""
    annotations = {}
    if config.router_load_balancer == "internal":
        annotations["service.beta.kubernetes.io/azure-load-balancer-internal"] = "true"
    if config.router.dns_label:
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
