"""Per-model Kubernetes workloads: image, keys, Deployment, Service (discovery contract), NetworkPolicies, PDB.

This module registers; what each object contains is built, purely, by `components.model_manifests`.

Replicas belong to the router's autoscaler after creation: the Deployment ignores
`spec.replicas`, so the next preview never resets what the router scaled to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import model_manifests as manifests
from components.acr_login import ACR_USERNAME
from components.modeldata import Collector, ModelDataStorage, ModelDataStorageArgs
from contract.names import Names
from contract.service import ModelService
from contract.stack import StackConfig
from router.discovery import SECRET_KEYS
from serving.hashing import StatCache
from serving.images import ENVIRONMENT_REPOSITORY, ServiceImage, service_image
from serving.translate import workload_name

BUILD_DIR = Path(__file__).resolve().parent.parent / ".build"


@dataclass
class ModelWorkloadsArgs:
    service: ModelService
    image: ServiceImage
    environment_image: str  # registry/repository:tag of the shared environment image
    environment_build: docker.Image  # built first: the service image starts FROM it
    config: StackConfig
    registry_server: str
    key_versions: tuple[int, int] = (0, 0)  # primary, secondary: bump one to rotate it (v1 regen_key)
    monitoring: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None  # (resource group, Log Analytics id)
    model_data: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None  # (container URL, identity client id)
    registry_password: pulumi.Input[str] | None = None  # deploy-time push token (components.registry)


def image_ref(registry_server: str, repository: str, tag: str) -> str:
    return f"{registry_server}/{repository}:{tag}"


def content_image(
    name: str, image_name: str, context: Path, registry_server: str, opts: pulumi.ResourceOptions,
    password: pulumi.Input[str] | None = None,
) -> docker.Image:
    """Build and push once per content hash; never at preview. Pushes as ACR's refresh-token user with `password`
    (the registry's deploy-time token, `components.registry`; a secret) when given (the admin user is off)."""
    login = {"username": ACR_USERNAME, "password": password} if password is not None else {}
    return docker.Image(
        name,
        image_name=image_name,
        build=docker.DockerBuildArgs(context=str(context), dockerfile=str(context / "Dockerfile"), platform="linux/amd64"),
        registry=docker.RegistryArgs(server=registry_server, **login),
        build_on_preview=False,
        opts=opts,
    )


class ModelWorkloads(pulumi.ComponentResource):
    """Registers one service's objects; what they contain is built by `components.model_manifests`."""

    def __init__(self, name: str, args: ModelWorkloadsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:workloads:ModelWorkloads", name, None, opts)
        service, config = args.service, args.config
        deployment = service.deployment
        app = workload_name(service.name)
        child = pulumi.ResourceOptions(parent=self)

        context = args.image.write_context(BUILD_DIR / service.name, args.environment_image)
        self.image = content_image(
            f"{name}-image",
            image_ref(args.registry_server, args.image.repository, args.image.tag),
            context,
            args.registry_server,
            pulumi.ResourceOptions(parent=self, depends_on=[args.environment_build]),
            args.registry_password,
        )

        keys_secret = manifests.keys_secret_name(service)
        if keys_secret:
            keys = []
            for index, (label, configured) in enumerate((("primary", deployment.keys.primary_key), ("secondary", deployment.keys.secondary_key))):
                if configured:
                    keys.append(pulumi.Output.secret(configured))
                    continue
                password = random.RandomPassword(
                    f"{name}-{label}-key",
                    length=32,
                    special=False,
                    keepers={"version": str(args.key_versions[index])},  # bump to rotate only this key
                    opts=child,
                )
                keys.append(password.result)
            k8s.core.v1.Secret(
                f"{name}-keys",
                metadata=manifests.object_metadata(keys_secret, service, config),
                type="Opaque",
                string_data=dict(zip(SECRET_KEYS, keys)),
                opts=child,
            )

        telemetry = bool(deployment.app_insights_enabled and args.monitoring)
        if telemetry:
            # v1 enableAppInsights: a workspace-based Application Insights component per service.
            import pulumi_azure_native.applicationinsights as applicationinsights

            resource_group, workspace_id = args.monitoring
            insights = applicationinsights.Component(
                f"{name}-appinsights",
                resource_name_=f"appi-{app}",
                resource_group_name=resource_group,
                location=config.location,
                kind="web",
                application_type="web",
                ingestion_mode="LogAnalytics",
                workspace_resource_id=workspace_id,
                opts=child,
            )
            k8s.core.v1.Secret(
                f"{name}-appinsights",
                metadata=manifests.object_metadata(manifests.telemetry_secret_name(service), service, config),
                type="Opaque",
                string_data={manifests.TELEMETRY_SECRET_KEY: pulumi.Output.secret(insights.instrumentation_key)},
                opts=child,
            )

        model_data_url, identity_client_id = args.model_data or (None, None)
        k8s.core.v1.ServiceAccount(
            f"{name}-serviceaccount",
            metadata=manifests.service_account_metadata(service, config, identity_client_id),
            automount_service_account_token=False,
            opts=child,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=manifests.deployment_metadata(service, config),
            spec=manifests.deployment_spec(service, config, self.image.repo_digest, telemetry=telemetry, model_data_url=model_data_url),
            # The router scales the Deployment (deployments/scale): keep previews free of replica drift.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=manifests.service_metadata(service, config, args.image.model_files),
            spec=manifests.service_spec(service),
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-from-router-only",
            metadata=manifests.ingress_policy_metadata(service, config),
            spec=manifests.ingress_policy_spec(service),
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-restricted-egress",
            metadata=manifests.egress_policy_metadata(service, config),
            spec=manifests.egress_policy_spec(service, calls_azure=telemetry or model_data_url is not None),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=manifests.object_metadata(app, service, config),
            spec=manifests.disruption_budget_spec(service),
            opts=child,
        )
        self.register_outputs({"image": self.image.repo_digest})


@dataclass
class ModelServicesArgs:
    config: StackConfig
    services: Sequence[ModelService]  # loaded once with the config (contract.loading.load_stack)
    registry_server: str
    monitoring: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None  # (resource group, Log Analytics id)
    names: Names | None = None
    oidc_issuer_url: pulumi.Input[str] | None = None  # for services that collect model data
    registry_password: pulumi.Input[str] | None = None  # deploy-time push token (components.registry)


class ModelServices(pulumi.ComponentResource):
    """Every model service of the stack: namespaces, one build per distinct environment, the workloads."""

    def __init__(self, name: str, args: ModelServicesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:workloads:ModelServices", name, None, opts)
        config, services = args.config, args.services
        cache = StatCache(BUILD_DIR.parent / ".cache" / "aks-inference" / "hashes.json")
        images = {s.name: service_image(s, cache) for s in services}
        cache.save()
        self.namespaces = {
            namespace: k8s.core.v1.Namespace(
                f"{name}-ns-{namespace}",
                metadata={"name": namespace, "labels": {"app.kubernetes.io/part-of": "aks-inference"}},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for namespace in sorted({s.namespace for s in services})
        }
        environments: dict[str, tuple[str, docker.Image]] = {}
        for image in images.values():
            tag = image.environment.tag
            if tag in environments:
                continue  # services with the same environment share one image and one build
            ref = image_ref(args.registry_server, ENVIRONMENT_REPOSITORY, tag)
            context = image.environment.write_context(BUILD_DIR / f"environment-{tag}")
            environments[tag] = (ref, content_image(
                f"{name}-environment-{tag}", ref, context, args.registry_server, pulumi.ResourceOptions(parent=self), args.registry_password,
            ))
        self.model_data = None
        collectors = [Collector(s.name, s.namespace, workload_name(s.name)) for s in services if s.deployment.collects_model_data]
        if collectors:
            self.model_data = ModelDataStorage(
                f"{name}-modeldata",
                ModelDataStorageArgs(config, args.names, args.monitoring[0], args.oidc_issuer_url, collectors),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.workloads = {}
        for service, entry in zip(services, config.models):
            ref, build = environments[images[service.name].environment.tag]
            self.workloads[service.name] = ModelWorkloads(
                f"{name}-{service.name}",
                ModelWorkloadsArgs(
                    service, images[service.name], ref, build, config, args.registry_server,
                    key_versions=(entry.key_rotation.primary, entry.key_rotation.secondary),
                    monitoring=args.monitoring,
                    model_data=(self.model_data.container_url, self.model_data.client_ids[service.name]) if service.deployment.collects_model_data else None,
                    registry_password=args.registry_password,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespaces[service.namespace]]),
            )
        self.register_outputs({"services": sorted(self.workloads), "modelDataUrl": self.model_data.container_url if self.model_data else None})
