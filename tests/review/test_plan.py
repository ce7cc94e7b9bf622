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


def plan(stack: str, out_dir: Path, config=None) -> tuple[int, str]:
    out = io.StringIO()
    return main(stack, out_dir, config=config, out=out), out.getvalue()


def change_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ") and not line.startswith("  [")]


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
    assert len(cluster) == 1 and cluster[0].startswith("+- ") and "networkProfile.networkPlugin," in cluster[0]
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
