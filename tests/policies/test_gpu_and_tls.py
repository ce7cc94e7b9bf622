"""`gpu-services-scheduled` and `router-tls-production` on what the program builds: the shipped gpu stack's
GPU model service and a production stack serving plain HTTP by choice (`tls.allowInsecure: true`), edited
only to make the failing cases; every verdict from the real analyzer."""

from __future__ import annotations

import pytest

from components.router_manifests import TLS_INSECURE_ANNOTATION
from contract.stack import GPU_TAINT, toleration_for
from review.analyzer import analyze
from tests.policies.helpers import container, edit, setter
from tests.policies.helpers import violations as _violations

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
GPU_MODEL = "model-diabetes-gpu"
ROUTER = "aks-inference-router"
GPU_RULE, TLS_RULE = "gpu-services-scheduled", "router-tls-production"


def model_pod(resources, name: str = GPU_MODEL) -> dict:
    return next(r for r in resources if r.type == DEPLOYMENT and r.inputs["metadata"]["name"] == name).inputs["spec"]["template"]["spec"]


def tolerating(*tolerations: dict):
    return edit(DEPLOYMENT, setter("spec.template.spec.tolerations", list(tolerations)), name=GPU_MODEL)


def test_the_program_builds_a_gpu_service_with_the_gpu_pools_toleration(stacks):
    pod = model_pod(stacks["gpu"])
    assert pod["tolerations"] == [toleration_for(GPU_TAINT)] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert GPU_RULE not in _violations(stacks["gpu"], only={GPU_RULE})


@pytest.mark.parametrize("toleration, passes", [
    ({"key": "sku", "operator": "Exists", "effect": "NoSchedule"}, True),  # any value of the key
    ({"key": "sku", "operator": "Equal", "value": "gpu"}, True),  # no effect: every effect
    ({"operator": "Exists"}, True),  # no key, Exists: every taint
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, False),  # the old rule's only accepted form: not our pools' taint
    ({"key": "sku", "operator": "Equal", "value": "fpga", "effect": "NoSchedule"}, False),
    ({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}, False),
    ({"key": "sku", "value": "gpu", "effect": "NoSchedule"}, True),  # Equal is the default operator
])
def test_tolerations_match_the_gpu_taint_as_kubernetes_matches_them(stacks, toleration, passes):
    assert (GPU_RULE not in _violations(tolerating(toleration)(stacks["gpu"]), only={GPU_RULE})) is passes


def test_a_gpu_service_without_a_toleration_fails_and_says_which_taint(stacks):
    found = analyze(tolerating()(stacks["gpu"]))["mandatory"]
    [hit] = [d for d in found if d.policy == GPU_RULE]
    assert f"does not tolerate the GPU pools' taint {GPU_TAINT}" in hit.message


def test_a_service_selecting_gpu_nodes_without_requesting_a_gpu_fails(stacks):
    no_limit = edit(DEPLOYMENT, container(lambda c: c["resources"]["limits"].pop("nvidia.com/gpu")), name=GPU_MODEL)
    found = analyze(no_limit(stacks["gpu"]))["mandatory"]
    assert any(d.policy == GPU_RULE and "requests no nvidia.com/gpu" in d.message for d in found)


def test_a_cpu_service_needs_no_toleration(stacks):
    pod = model_pod(stacks["dev"], "model-diabetes")
    assert not pod.get("tolerations") and "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert GPU_RULE not in _violations(stacks["dev"], only={GPU_RULE})


def test_allow_insecure_is_on_the_router_deployment_and_the_policy_honours_it(stacks):
    router = next(r for r in stacks["prod+insecure"] if r.type == DEPLOYMENT and r.inputs["metadata"]["name"] == ROUTER)
    assert router.inputs["metadata"]["annotations"] == {TLS_INSECURE_ANNOTATION: "true"}
    assert TLS_RULE not in _violations(stacks["prod+insecure"], only={TLS_RULE})
    # Without the stack's explicit choice the same plain-HTTP production router fails.
    unmarked = edit(DEPLOYMENT, setter("metadata.annotations", None), name=ROUTER)(stacks["prod+insecure"])
    assert TLS_RULE in _violations(unmarked, only={TLS_RULE})


def test_the_annotation_is_only_set_by_the_stack_choice(stacks):
    for stack in ("dev", "gpu"):  # prod ships no model, so no router
        router = next(r for r in stacks[stack] if r.type == DEPLOYMENT and r.inputs["metadata"]["name"] == ROUTER)
        assert TLS_INSECURE_ANNOTATION not in (router.inputs["metadata"].get("annotations") or {})
