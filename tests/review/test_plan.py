"""The offline plan: preview-like diff against the previous plan, replacement of force-new
changes, the protected-cluster rule fed from the previous plan, and no secret in any output."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from contract.stack import PROJECT_ROOT as ROOT
from review.plan import main
from tests.pulumi_harness import run_program, stack_config, with_config

POOL = "azure-native:containerservice:AgentPool"
CLUSTER = "azure-native:containerservice:ManagedCluster"


def plan(stack: str, out_dir: Path, config=None) -> tuple[int, str]:
    out = io.StringIO()
    return main(stack, out_dir, config=config, out=out), out.getvalue()


def change_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines()
            if line.startswith("  ") and not line.startswith(("  [", "      recipe for "))]


def recipe_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("      recipe for ")]


def test_unchanged_stack_plans_no_changes(tmp_path):
    code, first = plan("dev", tmp_path)
    assert code == 0 and "no previous plan" in first
    custom = [r for r in json.loads((tmp_path / "dev.json").read_text())["resources"] if r["custom"]]
    assert len(change_lines(first)) == len(custom) and all(line.startswith("+ ") for line in change_lines(first))
    code, second = plan("dev", tmp_path)
    assert code == 0
    assert change_lines(second) == [] and "Changes: none" in second
    assert (tmp_path / "dev" / "manifests" / "models--Deployment--model-diabetes.yaml").exists()


def test_gpu_pool_vm_size_change_replaces_only_that_pool(tmp_path):
    plan("prod", tmp_path)
    config = stack_config("prod")
    config["aks-inference:pools"][0]["vmSize"] = "Standard_NC48ads_A100_v4"
    _, output = plan("prod", tmp_path, config)
    assert change_lines(output) == [f"+- {POOL:<58} aks-inference-cluster-pool-gpu  [vmSize]"]


def test_network_plugin_change_replaces_the_cluster_and_is_blocked(tmp_path):
    plan("prod", tmp_path)
    config = stack_config("prod")
    config["aks-inference:network"]["plugin"] = "kubenet"
    code, output = plan("prod", tmp_path, config)
    cluster = [line for line in change_lines(output) if "ManagedCluster" in line]
    # A rebuild of the cluster: marked `!!` with the recipe, not a quiet replacement.
    assert len(cluster) == 1 and cluster[0].startswith("!! ") and "networkProfile.networkPlugin," in cluster[0]
    assert any(line.startswith("recipe for networkProfile.networkPlugin") and "build a new stack" in line for line in recipe_lines(output))
    assert code == 1
    assert "[protected-cluster-force-new-change] aks-inference-cluster-aks: networkProfile.networkPlugin 'azure' -> 'kubenet'" in output


def test_model_file_change_updates_only_that_services_image_and_deployment(tmp_path):
    models = tmp_path / "models" / "diabetes"
    shutil.copytree(ROOT / "examples" / "models" / "diabetes", models)
    config = with_config("dev", models=[{"name": "diabetes", "path": str(models)}])
    if run_program("dev", config).error is not None:
        pytest.skip("the program does not take a model folder outside the repository")
    plans = tmp_path / "plans"
    plan("dev", plans, config)
    score = models / "score.py"
    score.write_text(score.read_text() + "\n# scoring change\n")
    _, output = plan("dev", plans, config)
    changed = sorted(line.split()[2] for line in change_lines(output))
    assert [line.split()[0] for line in change_lines(output)] == ["~", "~"]
    assert changed == ["aks-inference-models-diabetes-deployment", "aks-inference-models-diabetes-image"]


def test_no_secret_value_in_plan_output(tmp_path):
    run = run_program("dev")
    keys = [r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")]
    kubeconfig = run.outputs["kubeconfig"] if "kubeconfig" in run.outputs else None
    assert keys and all(len(key) >= 16 for key in keys)
    _, output = plan("dev", tmp_path)
    written = [output] + [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    for secret in keys + ([kubeconfig] if isinstance(kubeconfig, str) else []):
        assert not any(secret in text for text in written)
    assert "[secret]" in (tmp_path / "dev" / "manifests" / "models--Secret--model-diabetes-keys.yaml").read_text()


def test_system_pool_vm_size_is_marked_with_the_new_system_pool_recipe_and_blocked(tmp_path):
    """AKS rejects a node pool's VM size in place: the plan says so, with the migration, instead of `~ [agentPoolProfiles]`."""
    plan("prod", tmp_path)
    config = stack_config("prod")
    config["aks-inference:cluster"]["systemPool"]["vmSize"] = "Standard_D16ds_v5"
    code, output = plan("prod", tmp_path, config)
    assert change_lines(output) == [f"!! {CLUSTER:<58} aks-inference-cluster-aks  [agentPoolProfiles[system].vmSize]"]
    [recipe] = recipe_lines(output)
    assert recipe.startswith("recipe for agentPoolProfiles[system].vmSize: Azure cannot change this in place;")
    assert "az aks nodepool add --mode System" in recipe and "cordon" in recipe and "az aks nodepool delete -n system" in recipe
    assert "Changes: 1 !!" in output
    assert code == 1 and "[protected-cluster-force-new-change] aks-inference-cluster-aks: agentPoolProfiles[system].vmSize 'Standard_D8ds_v5' -> 'Standard_D16ds_v5' is rejected by AKS" in output


def test_min_count_change_shows_only_min_count(tmp_path):
    """`count` is under ignore_changes (the autoscaler owns it): raising minCount changes only minCount."""
    plan("prod", tmp_path)
    config = stack_config("prod")
    config["aks-inference:pools"][0]["minCount"] = 2
    code, output = plan("prod", tmp_path, config)
    assert change_lines(output) == [f"~  {POOL:<58} aks-inference-cluster-pool-gpu  [minCount]"]
    assert code == 0


def test_pool_max_pods_change_is_marked_on_every_pool_of_the_protected_cluster(tmp_path):
    plan("prod", tmp_path)
    config = stack_config("prod")
    config["aks-inference:network"]["maxPods"] = 100
    code, output = plan("prod", tmp_path, config)
    assert sorted(change_lines(output)) == [
        f"!! {POOL:<58} aks-inference-cluster-pool-gpu  [maxPods]",
        f"!! {CLUSTER:<58} aks-inference-cluster-aks  [agentPoolProfiles[system].maxPods]",
    ]
    assert all("for each user pool" in line for line in recipe_lines(output))
    blocked = [line for line in output.splitlines() if line.startswith("  [protected-cluster-force-new-change]")]
    assert {line.split("]")[1].split(":")[0].strip() for line in blocked} == {"aks-inference-cluster-aks", "aks-inference-cluster-pool-gpu"}
    assert code == 1


@pytest.mark.parametrize("stack", sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")))
def test_every_shipped_stack_plans_clean(stack, tmp_path):
    code, output = plan(stack, tmp_path)
    assert code == 0, output
    assert "Policies mandatory: 0 violation(s)" in output


def test_enable_gpu_without_gpu_cores_is_a_warning_not_a_failure(tmp_path):
    """v1's enableGpu builds on the CUDA image; without gpuCores nothing puts the service on a GPU node: say so."""
    folder = tmp_path / "svc"
    shutil.copytree(ROOT / "examples" / "models" / "diabetes", folder)
    inference = json.loads((folder / "inferenceconfig.json").read_text())
    (folder / "inferenceconfig.json").write_text(json.dumps({**inference, "enableGpu": True}))
    model = {"name": "gpu-less", "path": str(folder)}
    code, output = plan("dev", tmp_path / "plans", with_config("dev", models=[model]))
    assert code == 0
    assert "Warning: service gpu-less: enableGpu is true but the deployment requests no GPU (gpuCores 0)" in output
    code, output = plan("gpu", tmp_path / "plans")
    assert code == 0 and "Warning:" not in output
