"""The router on the cluster: Envoy + control plane pods behind a LoadBalancer, least-privilege RBAC,
NetworkPolicies for its namespace, its own CPU HPA (models never get one), PDB, TLS from secret
config, Azure DNS label.

This module only registers: the objects' contents are built by the pure functions of
components/router_manifests.py, and what exists only at deploy time (the image digest, the TLS
pair as secrets, the LoadBalancer's IP) is passed to them or wrapped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.router_manifests import (
    TLS_SECRET,
    deployment_metadata,
    deployment_spec,
    hpa_spec,
    model_namespace_rules,
    namespace_metadata,
    network_policies,
    object_metadata,
    own_namespace_rules,
    pdb_spec,
    pod_annotations,
    pod_spec,
    role_ref,
    router_environment,
    router_replicas,
    scoring_base_url,
    service_account_subjects,
    service_annotations,
    service_spec,
    services_by_namespace,
    state_config_map,
)
from components.workloads import BUILD_DIR, content_image, image_ref
from contract.service import ModelService
from contract.stack import PROJECT_ROOT, StackConfig
from router.discovery import ROUTER_APP
from serving.images import ROUTER_REPOSITORY, router_build_context


@dataclass
class RouterClusterArgs:
    config: StackConfig
    registry_server: str
    services: Sequence[ModelService]  # what clients call (plain services, endpoints): the router reads their keys Secrets
    depends_on: list[pulumi.Resource]  # the model namespaces: its Roles live there
    registry_password: pulumi.Input[str] | None = None  # deploy-time push token (components.registry)
    # Where clients reach a router published by a firewall DNAT rule (the firewall's public IP), if so.
    published_ip: pulumi.Input[str] | None = None
    # What runs pods, which the router scales (plain services, endpoint versions); None: `services`.
    scaled: Sequence[ModelService] | None = None


def _load_balancer_ip(status: k8s.core.v1.outputs.ServiceStatus | None) -> str | None:
    """The first ingress IP Azure gave the LoadBalancer Service, None until it has one."""
    if status and status.load_balancer and status.load_balancer.ingress:
        return status.load_balancer.ingress[0].ip
    return None


class RouterCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: RouterClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:router:RouterCluster", name, None, opts)
        config = args.config
        tls = config.tls

        namespace = k8s.core.v1.Namespace(f"{name}-ns", metadata=namespace_metadata(), opts=pulumi.ResourceOptions(parent=self))
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        context, tag = router_build_context(BUILD_DIR / "router", PROJECT_ROOT)
        self.image = content_image(
            f"{name}-image", image_ref(args.registry_server, ROUTER_REPOSITORY, tag), context, args.registry_server,
            pulumi.ResourceOptions(parent=self), args.registry_password,
        )
        # The token is mounted by hand, into the control plane only (see router_manifests.pod_spec).
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=object_metadata(ROUTER_APP), automount_service_account_token=False, opts=in_namespace,
        )
        scaled = args.services if args.scaled is None else args.scaled
        keyed = services_by_namespace(args.services)
        by_namespace = services_by_namespace([*args.services, *scaled])
        for model_namespace in by_namespace:
            role = k8s.rbac.v1.Role(
                f"{name}-models-{model_namespace}",
                metadata=object_metadata(ROUTER_APP, model_namespace),
                rules=model_namespace_rules(keyed.get(model_namespace, []), [s for s in scaled if s.namespace == model_namespace]),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-models-{model_namespace}-binding",
                metadata=object_metadata(ROUTER_APP, model_namespace),
                role_ref=role_ref(),
                subjects=service_account_subjects(),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
            )
        own_role = k8s.rbac.v1.Role(f"{name}-self", metadata=object_metadata(ROUTER_APP), rules=own_namespace_rules(), opts=in_namespace)
        k8s.rbac.v1.RoleBinding(
            f"{name}-self-binding", metadata=object_metadata(ROUTER_APP), role_ref=role_ref(), subjects=service_account_subjects(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[own_role]),
        )
        # Declared once, empty; its data is the router's (rollbacks, scale-down windows): never reset by `pulumi up`.
        state = state_config_map()
        k8s.core.v1.ConfigMap(
            f"{name}-state", metadata=state["metadata"], data=state["data"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace], ignore_changes=["data"]),
        )
        if tls.enabled:
            k8s.core.v1.Secret(
                f"{name}-tls",
                metadata=object_metadata(TLS_SECRET),
                type="kubernetes.io/tls",
                string_data={"tls.crt": pulumi.Output.secret(tls.certificate), "tls.key": pulumi.Output.secret(tls.key)},
                opts=in_namespace,
            )

        environment = router_environment(config, list(by_namespace))
        for purpose, policy in network_policies(environment, tls.enabled).items():
            k8s.networking.v1.NetworkPolicy(f"{name}-{purpose}", metadata=policy["metadata"], spec=policy["spec"], opts=in_namespace)

        replicas = router_replicas(config)
        pod = pod_spec(environment, tls.enabled, self.image.repo_digest)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=deployment_metadata(config),
            spec=deployment_spec(replicas, pod, pod_annotations(config)),
            # The router's own HPA owns replicas after creation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, account], ignore_changes=["spec.replicas"]),
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(f"{name}-hpa", metadata=object_metadata(ROUTER_APP), spec=hpa_spec(replicas), opts=in_namespace)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=object_metadata(ROUTER_APP), spec=pdb_spec(replicas), opts=in_namespace)
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={**object_metadata(ROUTER_APP), "annotations": service_annotations(config)},
            spec=service_spec(tls.enabled),
            opts=in_namespace,
        )
        # The load balancer's IP once Azure gave it one (a firewall DNAT rule translates to it).
        self.load_balancer_ip = self.service.status.apply(_load_balancer_ip)
        # Known from config when a CNAME or DNS label names the router; otherwise the published or the LB's IP tells.
        configured_url = scoring_base_url(config)
        if configured_url:
            self.base_url = pulumi.Output.from_input(configured_url)
        else:
            address = pulumi.Output.from_input(args.published_ip) if args.published_ip is not None else self.load_balancer_ip
            self.base_url = address.apply(lambda ip: scoring_base_url(config, ip))
        self.register_outputs({"scoringBaseUrl": self.base_url})
