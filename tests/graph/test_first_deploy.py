"""What a first `pulumi up` on a fresh subscription needs, on the real program's inputs under mocks: a
supported Kubernetes version, a kubeconfig that signs in without a person, images pushed with an Entra-exchanged
ACR token (never in the offline plan), and Container Insights with managed identity (DCR + association)."""

from __future__ import annotations

import pulumi
import pytest
import yaml

from components import acr_login, registry
from components.azure_roles import ACR_PUSH
from components.cluster_profiles import CONTAINER_INSIGHTS_STREAMS
from review import offline
from tests.components.test_kubeconfig import AKS_EXEC_KUBECONFIG, EXPECTED_ARGS
from tests.pulumi_harness import fresh_run, run_program, stack_config, with_config

AKS = "azure-native:containerservice:ManagedCluster"
DCR = "azure-native:monitor:DataCollectionRule"
DCRA = "azure-native:monitor:DataCollectionRuleAssociation"
ROLE = "azure-native:authorization:RoleAssignment"
ACR = "azure-native:containerregistry:Registry"
IMAGE = "docker:index/image:Image"
K8S_PROVIDER = "pulumi:providers:kubernetes"


# --------------------------------------------------------------------------- versions


def test_shipped_stacks_run_a_supported_minor_under_community_support(dev_run, prod_run):
    for run in (dev_run, prod_run):
        cluster = run.one(AKS)
        assert cluster.inputs["kubernetesVersion"] == "1.36" and cluster.inputs["supportPlan"] == "KubernetesOfficial"
        assert {p["orchestratorVersion"] for p in cluster.inputs["agentPoolProfiles"]} == {"1.36"}


def test_an_expired_version_fails_before_anything_registers():
    run = run_program("dev", with_config("dev", cluster={**stack_config("dev")["aks-inference:cluster"], "kubernetesVersion": "1.34"}))
    assert isinstance(run.error, pulumi.RunError) and run.resources == []
    [line] = [line for line in str(run.error).splitlines() if line.strip().startswith("- cluster.kubernetesVersion:")]
    assert "1.34 reached end of support on 2026-11-01" in line and "cluster.supportPlan AKSLongTermSupport" in line


def test_long_term_support_reaches_the_cluster():
    cluster_config = {**stack_config("prod")["aks-inference:cluster"], "kubernetesVersion": "1.34", "skuTier": "Premium",
                      "supportPlan": "AKSLongTermSupport"}
    run = run_program("prod", with_config("prod", cluster=cluster_config))
    assert run.error is None, run.error
    cluster = run.one(AKS)
    assert (cluster.inputs["kubernetesVersion"], cluster.inputs["sku"], cluster.inputs["supportPlan"]) == (
        "1.34", {"name": "Base", "tier": "Premium"}, "AKSLongTermSupport")


# --------------------------------------------------------------------------- kubeconfig


@pytest.mark.parametrize("mode", ["azurecli", "spn"])
def test_the_kubernetes_provider_gets_the_converted_kubeconfig(monkeypatch, mode):
    # The mock answers listClusterUserCredential with what AKS returns for an Entra-only cluster.
    monkeypatch.setattr(offline, "FAKE_KUBECONFIG", AKS_EXEC_KUBECONFIG.replace("{", "{{").replace("}", "}}"))
    run = run_program("prod", with_config("prod", cluster={**stack_config("prod")["aks-inference:cluster"], "kubeLogin": mode}))
    assert run.error is None, run.error
    provider = run.one(K8S_PROVIDER)
    assert "kubeconfig" in provider.secret_paths
    [user] = yaml.safe_load(provider.inputs["kubeconfig"])["users"]
    assert user["user"]["exec"]["args"] == EXPECTED_ARGS[mode]
    assert yaml.safe_load(run.outputs["kubeconfig"])["users"][0]["user"]["exec"]["args"] == EXPECTED_ARGS[mode]


# --------------------------------------------------------------------------- ACR push


def test_the_deployer_may_push_and_the_offline_plan_exchanges_nothing(dev_run, monkeypatch):
    registry_id = dev_run.one(ACR).outputs["id"]
    [grant] = [r for r in dev_run.of_type(ROLE) if r.name.endswith("deployer-acrpush")]
    assert grant.inputs["scope"] == registry_id and grant.inputs["roleDefinitionId"].endswith(f"/roleDefinitions/{ACR_PUSH}")
    assert grant.inputs["principalId"] == offline._guid("object")  # the identity running the program
    images = dev_run.of_type(IMAGE)
    assert images and all(set(i.inputs["registry"]) == {"server"} for i in images)  # no token offline


def test_at_deploy_time_every_image_pushes_with_the_exchanged_token_as_a_secret(monkeypatch):
    exchanged = []
    monkeypatch.setattr(registry, "deploying", lambda: True)
    monkeypatch.setattr(acr_login, "push_password", lambda server, tenant: exchanged.append((server, tenant)) or "acr-refresh-token")
    run = fresh_run("dev")  # the patched deploy-time path, not a remembered offline run
    assert run.error is None, run.error
    login_server = run.one(ACR).outputs["loginServer"]
    assert exchanged == [(login_server, offline.TENANT)]
    images = run.of_type(IMAGE)
    assert len(images) >= 3  # environment, model service, router
    for image in images:
        assert image.inputs["registry"] == {"server": login_server, "username": acr_login.ACR_USERNAME, "password": "acr-refresh-token"}
        # The engine wraps the whole registry object as a secret once the password is one.
        assert {"registry", "registry.password"} & set(image.secret_paths), image.secret_paths


# --------------------------------------------------------------------------- Container Insights


def test_container_insights_uses_managed_identity_with_a_dcr_on_the_cluster(prod_run):
    cluster = prod_run.one(AKS)
    workspace_id = prod_run.one("azure-native:operationalinsights:Workspace").outputs["id"]
    assert cluster.inputs["addonProfiles"]["omsagent"]["config"] == {"logAnalyticsWorkspaceResourceID": workspace_id, "useAADAuth": "true"}
    rule, association = prod_run.one(DCR), prod_run.one(DCRA)
    [extension] = rule.inputs["dataSources"]["extensions"]
    assert extension["extensionName"] == "ContainerInsights" and extension["streams"] == list(CONTAINER_INSIGHTS_STREAMS)
    assert "Microsoft-ContainerLogV2" in extension["streams"] and "Microsoft-ContainerLog" not in extension["streams"]
    assert extension["extensionSettings"]["dataCollectionSettings"]["enableContainerLogV2"] is True
    [destination] = rule.inputs["destinations"]["logAnalytics"]
    assert destination["workspaceResourceId"] == workspace_id
    assert rule.inputs["dataFlows"] == [{"streams": list(CONTAINER_INSIGHTS_STREAMS), "destinations": [destination["name"]]}]
    assert association.inputs["resourceUri"] == cluster.outputs["id"]
    assert association.inputs["dataCollectionRuleId"] == rule.outputs["id"]
    assert association.inputs["associationName"] == "ContainerInsightsExtension"


def test_no_dcr_without_container_insights():
    run = run_program("dev", with_config("dev", monitoring={"containerInsights": False}))
    assert run.error is None, run.error
    assert not run.of_type(DCR) and not run.of_type(DCRA) and "omsagent" not in run.one(AKS).inputs["addonProfiles"]
