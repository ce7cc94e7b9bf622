"""Per-model Kubernetes workloads: image, keys, Deployment, Service (discovery contract), NetworkPolicy, PDB.

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

from aksinf_runtime import environment as runtime_env
from components.modeldata import Collector, ModelDataStorage, ModelDataStorageArgs
from components.names import PURPOSE_TAG, Names
from contract.service import ModelService
from contract.stack import ACCELERATOR_LABEL, GPU_TAINT, StackConfig
from router.discovery import MODEL_SERVICE_LABEL, ROUTER_APP, ROUTER_NAMESPACE
from serving.hashing import StatCache
from serving.images import ENVIRONMENT_REPOSITORY, ServiceImage, service_image
from serving.translate import (
    autoscale_settings,
    discovery_annotations,
    initial_replicas,
    worker_timeout_seconds,
    workload_name,
)

MODEL_COUNT_ANNOTATION = "aks-inference/model-count"
MODEL_PORT = 5001
MODELDATA_SPOOL = "/var/spool/modeldata"
MODELDATA_SPOOL_GIB = 1  # the emptyDir's size limit; the collector stops spooling at 90 % of it
WORKLOAD_IDENTITY_USE = "azure.workload.identity/use"
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
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


def image_ref(registry_server: str, repository: str, tag: str) -> str:
    return f"{registry_server}/{repository}:{tag}"


def content_image(name: str, image_name: str, context: Path, registry_server: str, opts: pulumi.ResourceOptions) -> docker.Image:
    """Build and push once per content hash; never at preview. Push credentials: `az acr login` (admin user is off)."""
    return docker.Image(
        name,
        image_name=image_name,
        build=docker.DockerBuildArgs(context=str(context), dockerfile=str(context / "Dockerfile"), platform="linux/amd64"),
        registry=docker.RegistryArgs(server=registry_server),
        build_on_preview=False,
        opts=opts,
    )


def _resources(deployment) -> dict:
    """v1 cpu/memoryInGB are requests; the limits default to the requests (v1 set none: we cap by default)."""
    wanted = deployment.container_resource_requirements
    requests = {"cpu": f"{round(wanted.cpu * 1000)}m", "memory": f"{round(wanted.memory_in_gb * 1024)}Mi"}
    limits = {
        "cpu": f"{round((wanted.cpu_limit or wanted.cpu) * 1000)}m",
        "memory": f"{round((wanted.memory_in_gb_limit or wanted.memory_in_gb) * 1024)}Mi",
    }
    if deployment.gpu_count:
        limits["nvidia.com/gpu"] = str(deployment.gpu_count)
        requests["nvidia.com/gpu"] = str(deployment.gpu_count)
    return {"requests": requests, "limits": limits}


def _probe(deployment, failure_threshold: int | None = None) -> dict:
    """v1's livenessProbeRequirements, on the inference server's health route."""
    probe = deployment.liveness_probe_requirements
    return {
        "httpGet": {"path": "/", "port": "http"},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "successThreshold": 1,
        "failureThreshold": failure_threshold or probe.failure_threshold,
    }


class ModelWorkloads(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelWorkloadsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:workloads:ModelWorkloads", name, None, opts)
        service, config = args.service, args.config
        deployment = service.deployment
        namespace = service.namespace
        app = workload_name(service.name)
        labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "aks-inference", MODEL_SERVICE_LABEL: "true", PURPOSE_TAG: config.purpose}
        child = pulumi.ResourceOptions(parent=self)

        context = args.image.write_context(BUILD_DIR / service.name, args.environment_image)
        self.image = content_image(
            f"{name}-image",
            image_ref(args.registry_server, args.image.repository, args.image.tag),
            context,
            args.registry_server,
            pulumi.ResourceOptions(parent=self, depends_on=[args.environment_build]),
        )

        keys_secret = None
        if deployment.auth_mode == "key":
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
            keys_secret = f"{app}-keys"
            k8s.core.v1.Secret(
                f"{name}-keys",
                metadata={"name": keys_secret, "namespace": namespace, "labels": labels},
                type="Opaque",
                string_data={"primaryKey": keys[0], "secondaryKey": keys[1]},
                opts=child,
            )

        telemetry_env = []
        if deployment.app_insights_enabled and args.monitoring:
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
                metadata={"name": f"{app}-appinsights", "namespace": namespace, "labels": labels},
                type="Opaque",
                string_data={"instrumentationKey": pulumi.Output.secret(insights.instrumentation_key)},
                opts=child,
            )
            telemetry_env = [
                {"name": runtime_env.APP_INSIGHTS_ENABLED, "value": "true"},
                {"name": runtime_env.APP_INSIGHTS_KEY, "valueFrom": {"secretKeyRef": {"name": f"{app}-appinsights", "key": "instrumentationKey"}}},
            ]

        # Each service runs as its own ServiceAccount: the federated identity for model data names it.
        account_metadata = {"name": app, "namespace": namespace, "labels": labels}
        if args.model_data:
            account_metadata["annotations"] = {WORKLOAD_IDENTITY_CLIENT_ID: args.model_data[1]}
        k8s.core.v1.ServiceAccount(
            f"{name}-serviceaccount",
            metadata=account_metadata,
            automount_service_account_token=False,
            opts=child,
        )
        pod_labels = {**labels, WORKLOAD_IDENTITY_USE: "true"} if args.model_data else labels
        collection_env, volumes, mounts = [], [{"name": "tmp", "emptyDir": {}}], [{"name": "tmp", "mountPath": "/tmp"}]
        if args.model_data:
            # The workload identity webhook adds AZURE_CLIENT_ID/TENANT_ID/FEDERATED_TOKEN_FILE and the token volume.
            collection_env = [
                {"name": runtime_env.MODELDATA_ENABLED, "value": "true"},
                {"name": runtime_env.MODELDATA_DESTINATION, "value": args.model_data[0]},
                {"name": runtime_env.MODELDATA_SPOOL, "value": MODELDATA_SPOOL},
                {"name": runtime_env.MODELDATA_SPOOL_LIMIT_BYTES, "value": str(int(0.9 * MODELDATA_SPOOL_GIB * 1024**3))},
            ]
            volumes.append({"name": "modeldata-spool", "emptyDir": {"sizeLimit": f"{MODELDATA_SPOOL_GIB}Gi"}})
            mounts.append({"name": "modeldata-spool", "mountPath": MODELDATA_SPOOL})

        autoscale = autoscale_settings(service, config.purpose)
        gpu = bool(deployment.gpu_count)
        key, rest = GPU_TAINT.split("=", 1)
        value, effect = rest.split(":")
        pod_spec: dict = {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "serviceAccountName": app,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": worker_timeout_seconds(deployment.scoring_timeout_ms) + 10,
            "containers": [
                {
                    "name": "model",
                    "image": self.image.repo_digest,
                    "ports": [{"name": "http", "containerPort": MODEL_PORT}],
                    "env": [
                        {"name": runtime_env.WORKER_COUNT, "value": str(deployment.max_concurrent)},
                        {"name": runtime_env.SCORING_TIMEOUT_MS, "value": str(deployment.scoring_timeout_ms)},
                        {"name": runtime_env.WORKER_TIMEOUT, "value": str(worker_timeout_seconds(deployment.scoring_timeout_ms))},
                        {"name": runtime_env.SERVICE_NAME, "value": service.name},
                        *telemetry_env,
                        *collection_env,
                    ],
                    "resources": _resources(deployment),
                    "livenessProbe": _probe(deployment),
                    "readinessProbe": {**_probe(deployment, failure_threshold=1), "initialDelaySeconds": 1},
                    # v1 waited initialDelaySeconds (310 s) before probing; a startup probe gives the same
                    # budget without delaying readiness of a fast-starting model.
                    "startupProbe": {
                        **_probe(deployment),
                        "initialDelaySeconds": 1,
                        "failureThreshold": max(1, deployment.liveness_probe_requirements.initial_delay_seconds // deployment.liveness_probe_requirements.period_seconds),
                    },
                    # Let the router drop this replica before the server stops taking requests.
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        }
        if gpu:
            pod_spec["tolerations"] = [{"key": key, "operator": "Equal", "value": value, "effect": effect}]
            pod_spec["nodeSelector"] = {ACCELERATOR_LABEL: "gpu"}
        if config.is_production:
            pod_spec["topologySpreadConstraints"] = [
                {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": app}}}
            ]
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": app, "namespace": namespace, "labels": labels},
            spec={
                "replicas": initial_replicas(autoscale),
                "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
            },
            # The router scales the Deployment (deployments/scale): keep previews free of replica drift.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={
                "name": app,
                "namespace": namespace,
                "labels": labels,
                "annotations": {
                    **discovery_annotations(service, autoscale, keys_secret),
                    # For policy: v1 allowed at most 1,000 models per service (one top-level entry each).
                    MODEL_COUNT_ANNOTATION: str(len({f.split("/", 1)[0] for f in args.image.model_files})),
                },
            },
            spec={"type": "ClusterIP", "selector": {"app.kubernetes.io/name": app}, "ports": [{"name": "http", "port": MODEL_PORT, "targetPort": "http"}]},
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-from-router-only",
            metadata={"name": f"{app}-from-router-only", "namespace": namespace, "labels": labels},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": app}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ROUTER_NAMESPACE}},
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}},
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": MODEL_PORT}],
                    }
                ],
            },
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": app, "namespace": namespace, "labels": labels},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": app}}},
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
            environments[tag] = (ref, content_image(f"{name}-environment-{tag}", ref, context, args.registry_server, pulumi.ResourceOptions(parent=self)))
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
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespaces[service.namespace]]),
            )
        self.register_outputs({"services": sorted(self.workloads), "modelDataUrl": self.model_data.container_url if self.model_data else None})
