"""How long `pulumi up` waits for each model Deployment: its startup budget, plus node provisioning when a pool
it needs can be at zero (pulumi-kubernetes' own 10 minutes would fail a cold GPU service)."""

from __future__ import annotations

import kubernetes_validate
import pytest

from components import model_manifests as manifests
from contract.loading import validate_stack_config
from contract.service import load_service
from contract.stack import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
ADMINS = ["00000000-0000-0000-0000-000000000001"]
GPU_POOL = {"name": "gpu", "vmSize": "Standard_NC24ads_A100_v4", "accelerator": "gpu", "maxCount": 2}
CPU_POOL = {"name": "cpu", "vmSize": "Standard_D4ds_v5", "maxCount": 3}


def config(*pools: dict):
    return validate_stack_config({"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ADMINS}, "pools": list(pools)}, "westeurope")


def timeout(service, stack) -> int:
    return int(manifests.deployment_metadata(service, stack)["annotations"][manifests.AWAIT_TIMEOUT_ANNOTATION])


def test_a_v1_default_service_gets_pull_plus_its_310_second_startup_budget():
    service = load_service(SAMPLE, "scorer", {})
    requirements = service.deployment.liveness_probe_requirements
    assert requirements.initial_delay_seconds == 310
    assert timeout(service, config()) == manifests.IMAGE_PULL_SECONDS + 310 + requirements.period_seconds > 600


def test_the_budget_follows_the_v1_probe_fields():
    service = load_service(SAMPLE, "scorer", {"livenessProbeRequirements": {"initialDelaySeconds": 30, "periodSeconds": 5}})
    assert timeout(service, config()) == manifests.IMAGE_PULL_SECONDS + 30 + 5


@pytest.mark.parametrize(("gpu_min", "cpu_min", "gpu_cores", "provisioning"), [
    (0, 1, 1, True),    # GPU service, GPU pool can be at zero
    (1, 0, 1, False),   # GPU service, its pool always has a node; the CPU pool at zero is not its pool
    (1, 0, 0, True),    # CPU service on an untainted CPU pool that can be at zero
    (0, 1, 0, False),   # CPU service; only the GPU pool scales to zero
])
def test_node_provisioning_is_added_only_when_the_services_pool_can_be_at_zero(gpu_min, cpu_min, gpu_cores, provisioning):
    stack = config({**GPU_POOL, "minCount": gpu_min}, {**CPU_POOL, "minCount": cpu_min})
    service = load_service(SAMPLE, "scorer", {"gpuCores": gpu_cores})
    base = load_service(SAMPLE, "scorer", {})
    without = manifests.IMAGE_PULL_SECONDS + base.deployment.liveness_probe_requirements.initial_delay_seconds \
        + base.deployment.liveness_probe_requirements.period_seconds
    assert timeout(service, stack) == without + (manifests.NODE_PROVISIONING_SECONDS if provisioning else 0)


def test_the_deployment_metadata_is_valid_and_keeps_the_workload_labels():
    service, stack = load_service(SAMPLE, "scorer", {}), config()
    metadata = manifests.deployment_metadata(service, stack)
    assert {k: v for k, v in metadata.items() if k != "annotations"} == manifests.object_metadata("model-scorer", service, stack)
    kubernetes_validate.validate({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                                  "spec": manifests.deployment_spec(service, stack, "acr.azurecr.io/x@sha256:" + "0" * 64,
                                                                    telemetry=False, model_data_url=None)}, "1.36", strict=True)
