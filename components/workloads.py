"""Per-model Kubernetes workloads: image, keys, Deployment, Service (discovery contract), NetworkPolicies, PDB.

This module registers; what each object contains is built, purely, by `components.model_manifests`.

A versioned endpoint registers a `ModelWorkloads` per version (a version is deployed exactly like a plain
service, except that its Service names the endpoint and it has no keys of its own) and one `ModelEndpoint`:
the endpoint's selector-less Service and its keys Secret. A change of traffic is a change of that Service alone.

Replicas belong to the router's autoscaler after creation: the Deployment ignores
`spec.replicas`, so the next preview never resets what the router scaled to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from contract.stack import ModelEntry, StackConfig
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
    endpoint: ModelService | None = None  # set on a version: the endpoint it answers behind (and whose keys it uses)


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


def keys_secret(
    name: str, service: ModelService, config: StackConfig, key_versions: tuple[int, int], opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret | None:
    """The service's keys Secret when it uses key auth: the configured keys, else random ones, each regenerated
    only when its `key_versions` entry is bumped (v1 regen_key)."""
    secret_name = manifests.keys_secret_name(service)
    if secret_name is None:
        return None
    configured = (service.deployment.keys.primary_key, service.deployment.keys.secondary_key)
    keys = []
    for index, label in enumerate(("primary", "secondary")):
        if configured[index]:
            keys.append(pulumi.Output.secret(configured[index]))
            continue
        password = random.RandomPassword(
            f"{name}-{label}-key",
            length=32,
            special=False,
            keepers={"version": str(key_versions[index])},  # bump to rotate only this key
            opts=opts,
        )
        keys.append(password.result)
    return k8s.core.v1.Secret(
        f"{name}-keys",
        metadata=manifests.object_metadata(secret_name, service, config),
        type="Opaque",
        string_data=dict(zip(SECRET_KEYS, keys)),
        opts=opts,
    )


@dataclass
class ModelEndpointArgs:
    endpoint: ModelService  # the entry's own service: the endpoint's name, namespace and auth
    entry: ModelEntry  # its `versions` and `rollout`
    config: StackConfig
    key_versions: tuple[int, int] = (0, 0)


class ModelEndpoint(pulumi.ComponentResource):
    """A versioned endpoint: no workload, only the Service the router routes by and the keys its versions share."""

    def __init__(self, name: str, args: ModelEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:workloads:ModelEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keys_secret(name, args.endpoint, args.config, args.key_versions, child)
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=manifests.endpoint_metadata(args.endpoint, args.entry, args.config),
            spec=manifests.endpoint_spec(),
            opts=child,
        )
        self.register_outputs({"versions": [v.name for v in args.entry.versions]})


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

        if args.endpoint is None:  # a version answers behind its endpoint's keys
            keys_secret(name, service, config, args.key_versions, child)

        telemetry = bool(deployment.app_insights_enabled and args.monitoring)
        if telemetry:
            # v1 enableAppInsights: a workspace-based Application Insights component per service.
            from pulumi_azure_native import applicationinsights

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
            metadata=manifests.service_metadata(service, config, args.image.model_files, args.endpoint),
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
    # endpoint name -> its versions' services (LoadedStack.versions): each deployed in place of the entry's own service
    versions: Mapping[str, Sequence[ModelService]] = field(default_factory=dict)


def deployed_services(services: Sequence[ModelService], versions: Mapping[str, Sequence[ModelService]]) -> list[ModelService]:
    """What runs pods, in `models` order: each plain service, and every version in place of its endpoint."""
    return [workload for service in services for workload in (versions.get(service.name) or (service,))]


class ModelServices(pulumi.ComponentResource):
    """Every model service of the stack: namespaces, one build per distinct environment, the workloads, and the
    endpoint object of every versioned endpoint."""

    def __init__(self, name: str, args: ModelServicesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:workloads:ModelServices", name, None, opts)
        config, services = args.config, args.services
        self.deployed = deployed = deployed_services(services, args.versions)
        # What clients call (/api/v1/service/<name>/): plain services and endpoints, never a version on its own.
        self.scoring_names = sorted(s.name for s in services)
        # The services whose keys Secrets the router reads: plain services and endpoints (a version has no keys of
        # its own); what it scales is `deployed` (plain services and versions).
        self.keyed_services = list(services)
        cache = StatCache(BUILD_DIR.parent / ".cache" / "aks-inference" / "hashes.json")
        images = {s.name: service_image(s, cache) for s in deployed}
        cache.save()
        self.namespaces = {
            namespace: k8s.core.v1.Namespace(
                f"{name}-ns-{namespace}",
                metadata={"name": namespace, "labels": {"app.kubernetes.io/part-of": "aks-inference"}},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for namespace in sorted({s.namespace for s in (*services, *deployed)})
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
        # Per version too: the collector's service name is the version's, so `aksinf compare` tells predictions apart.
        collectors = [Collector(s.name, s.namespace, workload_name(s.name)) for s in deployed if s.deployment.collects_model_data]
        if collectors:
            self.model_data = ModelDataStorage(
                f"{name}-modeldata",
                ModelDataStorageArgs(config, args.names, args.monitoring[0], args.oidc_issuer_url, collectors),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.workloads: dict[str, ModelWorkloads] = {}  # every Deployment's, versions' included
        self.endpoints: dict[str, ModelEndpoint] = {}
        for service, entry in zip(services, config.models):
            key_versions = (entry.key_rotation.primary, entry.key_rotation.secondary)
            versions = args.versions.get(service.name) or ()
            endpoint = service if versions else None
            if endpoint is not None:
                self.endpoints[service.name] = ModelEndpoint(
                    f"{name}-{service.name}", ModelEndpointArgs(service, entry, config, key_versions),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespaces[service.namespace]]),
                )
            for workload in versions or (service,):
                ref, build = environments[images[workload.name].environment.tag]
                self.workloads[workload.name] = ModelWorkloads(
                    f"{name}-{workload.name}",
                    ModelWorkloadsArgs(
                        workload, images[workload.name], ref, build, config, args.registry_server,
                        key_versions=key_versions,
                        monitoring=args.monitoring,
                        model_data=(self.model_data.container_url, self.model_data.client_ids[workload.name]) if workload.deployment.collects_model_data else None,
                        registry_password=args.registry_password,
                        endpoint=endpoint,
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespaces[workload.namespace]]),
                )
        self.register_outputs({"services": self.scoring_names, "modelDataUrl": self.model_data.container_url if self.model_data else None})
