"""What one model service looks like on the cluster, as plain dicts: labels, pod spec, probes,
resources, container environment, ServiceAccount and Service metadata, Service, NetworkPolicies
(ingress and egress) and PodDisruptionBudget specs, and the NetworkPolicy peers and egress rules the
router's policies share (components/router_manifests.py imports them: it depends on this module).

A versioned endpoint (an `aks-inference:models` entry with `versions`, contract/endpoints.py) is no
workload: each version is a model service like any other (its own everything, its Service naming the
endpoint and the endpoint's keys Secret), and the endpoint is one Service without selector that the
router routes by (`endpoint_metadata`, `endpoint_spec`), plus the keys Secret all its versions answer behind.

The promise: every function here is pure. The same `ModelService`, `StackConfig` and strings give the
same dicts, every time; nothing registers a resource, reads a file or imports Pulumi.
`components.workloads.ModelWorkloads` only registers what these return. The few values that exist
only once Pulumi has run (the image digest, the model data container URL, a workload identity's
client id) come in as arguments, typed `StrInput`: the builders place them and never read them, so a
`str` in a test and a `pulumi.Output[str]` in the program land in the same place.

Why: the shape of a model replica (what v1's deploymentconfig.json becomes in a pod) is the part most
worth testing, and pure functions are tested directly against the Kubernetes schema, without Pulumi
mocks (tests/components/test_model_manifests.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aksinf_runtime import environment as runtime_env
from contract.names import PURPOSE_TAG
from contract.service import ModelService
from contract.stack import (
    ACCELERATOR_LABEL,
    GPU_TAINT,
    ModelEntry,
    StackConfig,
    toleration_for,
)
from contract.v1_files import DeploymentConfig
from router.discovery import (
    ENDPOINT_LABEL,
    MODEL_SERVICE_LABEL,
    ROUTER_APP,
    ROUTER_NAMESPACE,
)
from serving.translate import (
    autoscale_settings,
    discovery_annotations,
    endpoint_annotations,
    initial_replicas,
    worker_timeout_seconds,
    workload_name,
)

# A str, or the pulumi.Output[str] the program passes: builders place such a value, never read it.
StrInput = Any

MODEL_COUNT_ANNOTATION = "aks-inference/model-count"
MODEL_PORT = 5001
MODELDATA_SPOOL = "/var/spool/modeldata"
MODELDATA_SPOOL_GIB = 1  # the emptyDir's size limit; the collector stops spooling at 90 % of it
WORKLOAD_IDENTITY_USE = "azure.workload.identity/use"
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
TELEMETRY_SECRET_KEY = "instrumentationKey"  # the Application Insights Secret's one data key
IMDS_CIDR = "169.254.169.254/32"  # Azure's instance metadata service: node credentials, never for pods


def selector_labels(service: ModelService) -> dict[str, str]:
    """The one label that picks a service's pods: Deployment, Service, NetworkPolicy and PDB select on it."""
    return {"app.kubernetes.io/name": workload_name(service.name)}


def workload_labels(service: ModelService, config: StackConfig) -> dict[str, str]:
    """On every object of a model service: the router's discovery label and the purpose policies read."""
    return {
        **selector_labels(service),
        "app.kubernetes.io/part-of": "aks-inference",
        MODEL_SERVICE_LABEL: "true",
        PURPOSE_TAG: config.purpose,
    }


def object_metadata(name: str, service: ModelService, config: StackConfig) -> dict:
    """Explicit names in the service's namespace: no autonaming, so previews never churn."""
    return {"name": name, "namespace": service.namespace, "labels": workload_labels(service, config)}


def keys_secret_name(service: ModelService) -> str | None:
    """The Secret with the service's keys (discovery's keys-secret), or None when auth is not key auth."""
    return f"{workload_name(service.name)}-keys" if service.deployment.auth_mode == "key" else None


def telemetry_secret_name(service: ModelService) -> str:
    """The Secret holding the service's Application Insights instrumentation key."""
    return f"{workload_name(service.name)}-appinsights"


def telemetry_env(service: ModelService) -> list[dict]:
    """v1 enableAppInsights: the inference server's switch, and its key read from the telemetry Secret."""
    return [
        {"name": runtime_env.APP_INSIGHTS_ENABLED, "value": "true"},
        {
            "name": runtime_env.APP_INSIGHTS_KEY,
            "valueFrom": {"secretKeyRef": {"name": telemetry_secret_name(service), "key": TELEMETRY_SECRET_KEY}},
        },
    ]


def model_data_env(destination: StrInput) -> list[dict]:
    """The collector's settings. The workload identity webhook adds AZURE_CLIENT_ID/TENANT_ID/
    FEDERATED_TOKEN_FILE and the token volume, so no credential is set here."""
    return [
        {"name": runtime_env.MODELDATA_ENABLED, "value": "true"},
        {"name": runtime_env.MODELDATA_DESTINATION, "value": destination},
        {"name": runtime_env.MODELDATA_SPOOL, "value": MODELDATA_SPOOL},
        {"name": runtime_env.MODELDATA_SPOOL_LIMIT_BYTES, "value": str(int(0.9 * MODELDATA_SPOOL_GIB * 1024**3))},
    ]


def container_env(service: ModelService, *, telemetry: bool, model_data_url: StrInput | None) -> list[dict]:
    """Everything the model container reads (names from `aksinf_runtime.environment`, never respelled).

    `telemetry`: the telemetry Secret exists; `model_data_url`: the blob container when the service collects.
    """
    deployment = service.deployment
    return [
        {"name": runtime_env.WORKER_COUNT, "value": str(deployment.max_concurrent)},
        {"name": runtime_env.SCORING_TIMEOUT_MS, "value": str(deployment.scoring_timeout_ms)},
        {"name": runtime_env.WORKER_TIMEOUT, "value": str(worker_timeout_seconds(deployment.scoring_timeout_ms))},
        {"name": runtime_env.SERVICE_NAME, "value": service.name},
        *(telemetry_env(service) if telemetry else []),
        *(model_data_env(model_data_url) if model_data_url is not None else []),
    ]


def scratch_volumes(collects_model_data: bool) -> tuple[list[dict], list[dict]]:
    """(pod volumes, container mounts): a writable /tmp under the read-only root filesystem, plus the
    size-limited model data spool when the service collects."""
    volumes, mounts = [{"name": "tmp", "emptyDir": {}}], [{"name": "tmp", "mountPath": "/tmp"}]
    if collects_model_data:
        volumes.append({"name": "modeldata-spool", "emptyDir": {"sizeLimit": f"{MODELDATA_SPOOL_GIB}Gi"}})
        mounts.append({"name": "modeldata-spool", "mountPath": MODELDATA_SPOOL})
    return volumes, mounts


def container_resources(deployment: DeploymentConfig) -> dict:
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


def probe(deployment: DeploymentConfig, failure_threshold: int | None = None) -> dict:
    """v1's livenessProbeRequirements, on the inference server's health route."""
    requirements = deployment.liveness_probe_requirements
    return {
        "httpGet": {"path": "/", "port": "http"},
        "initialDelaySeconds": requirements.initial_delay_seconds,
        "periodSeconds": requirements.period_seconds,
        "timeoutSeconds": requirements.timeout_seconds,
        "successThreshold": 1,
        "failureThreshold": failure_threshold or requirements.failure_threshold,
    }


def container_probes(deployment: DeploymentConfig) -> dict:
    """Liveness as v1 configured it; readiness drops a replica at its first failure.

    v1 waited initialDelaySeconds (310 s) before probing; a startup probe gives the same budget
    without delaying readiness of a fast-starting model.
    """
    requirements = deployment.liveness_probe_requirements
    return {
        "livenessProbe": probe(deployment),
        "readinessProbe": {**probe(deployment, failure_threshold=1), "initialDelaySeconds": 1},
        "startupProbe": {
            **probe(deployment),
            "initialDelaySeconds": 1,
            "failureThreshold": max(1, requirements.initial_delay_seconds // requirements.period_seconds),
        },
    }


def gpu_placement() -> dict:
    """Tolerate the GPU pools' taint and land only on GPU nodes."""
    return {
        "tolerations": [toleration_for(GPU_TAINT)],
        "nodeSelector": {ACCELERATOR_LABEL: "gpu"},
    }


def node_spread(service: ModelService) -> list[dict]:
    """Production only: replicas prefer distinct nodes, so one node's loss never takes the whole service."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(service)},
        }
    ]


def model_pod_spec(
    service: ModelService, config: StackConfig, image: StrInput, *, telemetry: bool, model_data_url: StrInput | None
) -> dict:
    """One replica: non-root, read-only, its own ServiceAccount, and a grace period past gunicorn's hard kill."""
    deployment = service.deployment
    volumes, mounts = scratch_volumes(model_data_url is not None)
    pod_spec: dict = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "serviceAccountName": workload_name(service.name),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": worker_timeout_seconds(deployment.scoring_timeout_ms) + 10,
        "containers": [
            {
                "name": "model",
                "image": image,
                "ports": [{"name": "http", "containerPort": MODEL_PORT}],
                "env": container_env(service, telemetry=telemetry, model_data_url=model_data_url),
                "resources": container_resources(deployment),
                **container_probes(deployment),
                # Let the router drop this replica before the server stops taking requests.
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if deployment.gpu_count:
        pod_spec.update(gpu_placement())
    if config.is_production:
        pod_spec["topologySpreadConstraints"] = node_spread(service)
    return pod_spec


# pulumi-kubernetes waits 10 minutes for a Deployment to become ready, then fails the update
# (https://www.pulumi.com/docs/iac/clouds/kubernetes/guides/await-logic/); the `pulumi.com/timeoutSeconds`
# annotation sets that wait. A model's wait is its own startup budget plus what precedes the first probe.
AWAIT_TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
IMAGE_PULL_SECONDS = 600  # a multi-GB model image pulled onto a fresh node
# A pool at zero nodes first gets one: VM creation, node bootstrap and, on GPU pools, the NVIDIA driver install
# (https://learn.microsoft.com/azure/aks/cluster-autoscaler, https://learn.microsoft.com/azure/aks/use-nvidia-gpu).
NODE_PROVISIONING_SECONDS = 900


def candidate_pools(service: ModelService, config: StackConfig) -> list:
    """The user pools a replica can land on: GPU pools for GPU services, untainted CPU pools otherwise."""
    if service.deployment.gpu_count:
        return config.gpu_pools
    return [p for p in config.pools if p.accelerator == "none" and not p.effective_taints]


def await_timeout_seconds(service: ModelService, config: StackConfig) -> int:
    """How long `pulumi up` waits for the Deployment: image pull + the startup probe's budget (v1's
    initialDelaySeconds) + one readiness period, plus node provisioning when a pool it needs can be at zero
    (the image pull alone is pulumi-kubernetes' default 10 minutes)."""
    requirements = service.deployment.liveness_probe_requirements
    budget = IMAGE_PULL_SECONDS + requirements.initial_delay_seconds + requirements.period_seconds
    if any(pool.min_count == 0 for pool in candidate_pools(service, config)):
        budget += NODE_PROVISIONING_SECONDS
    return budget


def deployment_metadata(service: ModelService, config: StackConfig) -> dict:
    """The Deployment's metadata: the workload's, and how long `pulumi up` may wait for it."""
    return {
        **object_metadata(workload_name(service.name), service, config),
        "annotations": {AWAIT_TIMEOUT_ANNOTATION: str(await_timeout_seconds(service, config))},
    }


def pod_labels(service: ModelService, config: StackConfig, *, workload_identity: bool) -> dict[str, str]:
    """The workload labels, plus the webhook's opt-in when the pod uses its workload identity."""
    labels = workload_labels(service, config)
    return {**labels, WORKLOAD_IDENTITY_USE: "true"} if workload_identity else labels


def deployment_spec(
    service: ModelService, config: StackConfig, image: StrInput, *, telemetry: bool, model_data_url: StrInput | None
) -> dict:
    """Surge one replica at a time and never drop below the current count; `replicas` is only the count at
    creation (the router's autoscaler owns it afterwards)."""
    return {
        "replicas": initial_replicas(autoscale_settings(service, config.purpose)),
        "selector": {"matchLabels": selector_labels(service)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": pod_labels(service, config, workload_identity=model_data_url is not None)},
            "spec": model_pod_spec(service, config, image, telemetry=telemetry, model_data_url=model_data_url),
        },
    }


def service_account_metadata(service: ModelService, config: StackConfig, identity_client_id: StrInput | None) -> dict:
    """Each service runs as its own ServiceAccount: the federated identity for model data names it."""
    metadata = object_metadata(workload_name(service.name), service, config)
    if identity_client_id is not None:
        metadata["annotations"] = {WORKLOAD_IDENTITY_CLIENT_ID: identity_client_id}
    return metadata


def service_metadata(service: ModelService, config: StackConfig, model_files: Iterable[str], endpoint: ModelService | None = None) -> dict:
    """The discovery contract the in-cluster router reads, plus the model count for policy. A version of
    `endpoint` names it, and answers behind the endpoint's keys (one scoring URI, one set of keys)."""
    return {
        **object_metadata(workload_name(service.name), service, config),
        "annotations": {
            **discovery_annotations(service, autoscale_settings(service, config.purpose), keys_secret_name(endpoint or service),
                                    endpoint.name if endpoint else None),
            # For policy: v1 allowed at most 1,000 models per service (one top-level entry each).
            MODEL_COUNT_ANNOTATION: str(len({f.split("/", 1)[0] for f in model_files})),
        },
    }


def service_spec(service: ModelService) -> dict:
    """Cluster-internal only: the router is the one way in."""
    return {"type": "ClusterIP", "selector": selector_labels(service), "ports": [{"name": "http", "port": MODEL_PORT, "targetPort": "http"}]}


def endpoint_metadata(endpoint: ModelService, entry: ModelEntry, config: StackConfig) -> dict:
    """The endpoint object: labelled as a model service and as an endpoint, annotated with the endpoint's auth
    and keys and its versions' traffic (serving.translate.endpoint_annotations)."""
    metadata = object_metadata(workload_name(endpoint.name), endpoint, config)
    return {
        **metadata,
        "labels": {**metadata["labels"], ENDPOINT_LABEL: "true"},
        "annotations": endpoint_annotations(endpoint, entry, keys_secret_name(endpoint)),
    }


def endpoint_spec() -> dict:
    """No selector, so no pods and no EndpointSlices of its own: the router sends its requests to the versions."""
    return {"type": "ClusterIP", "ports": [{"name": "http", "port": MODEL_PORT}]}


def router_pods_peer() -> dict:
    """Router pods, from any namespace: the one peer allowed to reach a model or a router's status port."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ROUTER_NAMESPACE}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}},
    }


def model_pods_peer(namespace: str) -> dict:
    """Every model pod of one namespace, by the discovery label each of them carries."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": {MODEL_SERVICE_LABEL: "true"}},
    }


def dns_egress() -> dict:
    """Name lookups, to the cluster DNS pods only (CoreDNS keeps the `k8s-app: kube-dns` label on AKS)."""
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def https_egress() -> dict:
    """HTTPS anywhere except the instance metadata service, whose node credentials no pod should reach.

    A NetworkPolicy cannot name hosts, so the endpoints a pod calls (the API server, Entra ID,
    storage, Application Insights) are allowed as TCP 443 to every address; where the stack sends
    egress through a firewall, its allowlist narrows them to names.
    """
    return {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS_CIDR]}}], "ports": [{"protocol": "TCP", "port": 443}]}


def ingress_policy_metadata(service: ModelService, config: StackConfig) -> dict:
    """Named for what it does, so `kubectl get networkpolicy` explains itself."""
    return object_metadata(f"{workload_name(service.name)}-from-router-only", service, config)


def ingress_policy_spec(service: ModelService) -> dict:
    """Only router pods, from the router's namespace, on the model port: keys and timeouts cannot be bypassed."""
    return {
        "podSelector": {"matchLabels": selector_labels(service)},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [router_pods_peer()], "ports": [{"protocol": "TCP", "port": MODEL_PORT}]}],
    }


def egress_policy_metadata(service: ModelService, config: StackConfig) -> dict:
    """Named for what it does, like the ingress policy."""
    return object_metadata(f"{workload_name(service.name)}-restricted-egress", service, config)


def egress_policy_spec(service: ModelService, *, calls_azure: bool) -> dict:
    """DNS, plus HTTPS when the pod calls Azure (`calls_azure`: it uploads model data or sends telemetry).

    Nothing else: a model that runs user code must not reach the router's ports, other models, or
    the instance metadata service.
    """
    return {
        "podSelector": {"matchLabels": selector_labels(service)},
        "policyTypes": ["Egress"],
        "egress": [dns_egress(), *([https_egress()] if calls_azure else [])],
    }


def disruption_budget_spec(service: ModelService) -> dict:
    """Drains evict one replica at a time."""
    return {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(service)}}
