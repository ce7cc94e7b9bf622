"""The router on the cluster: Envoy + control plane pods behind a LoadBalancer, least-privilege RBAC,
its own CPU HPA (models never get one), PDB, TLS from secret config, Azure DNS label."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.workloads import BUILD_DIR, content_image, image_ref
from contract.stack import PROJECT_ROOT, StackConfig
from router.discovery import ROUTER_APP, ROUTER_NAMESPACE
from router.environment import RouterEnvironment
from serving.images import ROUTER_REPOSITORY, router_build_context


@dataclass
class RouterClusterArgs:
    config: StackConfig
    registry_server: str
    model_namespaces: list[str]
    depends_on: list[pulumi.Resource]


def _rbac_rules_for_models() -> list[dict]:
    """Read what discovery needs, write only the scale subresource."""
    return [
        {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
    ]


class RouterCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: RouterClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:router:RouterCluster", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/name": ROUTER_APP, "app.kubernetes.io/part-of": "aks-inference"}
        meta = lambda n: {"name": n, "namespace": ROUTER_NAMESPACE, "labels": labels}  # noqa: E731

        namespace = k8s.core.v1.Namespace(f"{name}-ns", metadata={"name": ROUTER_NAMESPACE, "labels": labels}, opts=child)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        context, tag = router_build_context(BUILD_DIR / "router", PROJECT_ROOT)
        self.image = content_image(
            f"{name}-image", image_ref(args.registry_server, ROUTER_REPOSITORY, tag), context, args.registry_server,
            pulumi.ResourceOptions(parent=self),
        )
        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(ROUTER_APP), automount_service_account_token=True, opts=in_namespace)
        subject = [{"kind": "ServiceAccount", "name": ROUTER_APP, "namespace": ROUTER_NAMESPACE}]
        for model_namespace in args.model_namespaces:
            role = k8s.rbac.v1.Role(
                f"{name}-models-{model_namespace}",
                metadata={"name": ROUTER_APP, "namespace": model_namespace, "labels": labels},
                rules=_rbac_rules_for_models(),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-models-{model_namespace}-binding",
                metadata={"name": ROUTER_APP, "namespace": model_namespace, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER_APP},
                subjects=subject,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
            )
        own_role = k8s.rbac.v1.Role(
            f"{name}-self",
            metadata=meta(ROUTER_APP),
            rules=[
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},  # peer routers
            ],
            opts=in_namespace,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-self-binding", metadata=meta(ROUTER_APP),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER_APP}, subjects=subject,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[own_role]),
        )

        tls = config.tls
        environment = RouterEnvironment(
            model_namespaces=tuple(args.model_namespaces),
            listen_port=RouterEnvironment().scoring_port(tls.enabled),
            jwt_issuer=config.auth.issuer if config.auth else None,
            jwt_audience=config.auth.audience if config.auth else None,
            jwks_uri=config.auth.jwks_uri if config.auth else None,
        )
        volumes = [{"name": "envoy-config", "emptyDir": {}}]
        mounts = [{"name": "envoy-config", "mountPath": environment.config_dir}]
        if tls.enabled:
            k8s.core.v1.Secret(
                f"{name}-tls",
                metadata=meta(f"{ROUTER_APP}-tls"),
                type="kubernetes.io/tls",
                string_data={"tls.crt": pulumi.Output.secret(tls.certificate), "tls.key": pulumi.Output.secret(tls.key)},
                opts=in_namespace,
            )
            # A mounted Secret updates in place; Envoy reads it through SDS, so rotation needs no restart.
            volumes.append({"name": "tls", "secret": {"secretName": f"{ROUTER_APP}-tls"}})
            mounts.append({"name": "tls", "mountPath": environment.tls_dir, "readOnly": True})
        port = environment.scoring_port(tls.enabled)
        env = environment.as_env()
        hardened = {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
        replicas = config.router.replicas or (3 if config.is_production else 1)
        pod = {
            "serviceAccountName": ROUTER_APP,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}}}}
                    ]
                }
            },
            "containers": [
                {
                    "name": "control-plane",
                    "image": self.image.repo_digest,
                    "args": ["control-plane"],
                    "env": env,
                    "ports": [{"name": "metrics", "containerPort": environment.metrics_port}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "securityContext": hardened,
                    "volumeMounts": mounts,
                },
                {
                    "name": "envoy",
                    "image": self.image.repo_digest,
                    # Waits for the bootstrap the control plane writes into the shared directory, then execs Envoy.
                    "args": ["envoy"],
                    "env": env,
                    "ports": [{"name": "scoring", "containerPort": port}, {"name": "admin", "containerPort": environment.admin_port}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin"}, "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/ready", "port": "admin"}, "initialDelaySeconds": 10, "periodSeconds": 10},
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                    "securityContext": hardened,
                    "volumeMounts": mounts,
                },
            ],
            "volumes": volumes,
        }
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(ROUTER_APP),
            spec={
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
            # The router's own HPA owns replicas after creation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, account], ignore_changes=["spec.replicas"]),
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=meta(ROUTER_APP),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ROUTER_APP},
                "minReplicas": replicas,
                "maxReplicas": replicas * 3,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
            },
            opts=in_namespace,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(ROUTER_APP),
            spec={"minAvailable": max(1, replicas - 1), "selector": {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}}},
            opts=in_namespace,
        )
        annotations = {}
        if config.router.load_balancer == "internal":
            annotations["service.beta.kubernetes.io/azure-load-balancer-internal"] = "true"
        if config.router.dns_label:
            annotations["service.beta.kubernetes.io/azure-dns-label-name"] = config.router.dns_label
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={**meta(ROUTER_APP), "annotations": annotations},
            spec={
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "selector": {"app.kubernetes.io/name": ROUTER_APP},
                "ports": [{"name": "https" if tls.enabled else "http", "port": 443 if tls.enabled else 80, "targetPort": "scoring"}],
            },
            opts=in_namespace,
        )
        scheme = "https" if tls.enabled else "http"
        if tls.cname:
            self.base_url = pulumi.Output.from_input(f"{scheme}://{tls.cname}")
        elif config.router.dns_label:
            self.base_url = pulumi.Output.from_input(f"{scheme}://{config.router.dns_label}.{config.location}.cloudapp.azure.com")
        else:
            self.base_url = self.service.status.apply(
                lambda status: f"{scheme}://{status.load_balancer.ingress[0].ip}" if status and status.load_balancer and status.load_balancer.ingress else None
            )
        self.register_outputs({"scoringBaseUrl": self.base_url})
