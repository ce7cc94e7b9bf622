"""The cluster's pure builders, on validated configs, without Pulumi: every decision the cluster registers."""

from __future__ import annotations

import pytest

from components.cluster_profiles import (
    CRITICAL_ADDONS_ONLY_TAINT,
    IMAGE_CLEANER_INTERVAL_HOURS,
    NVIDIA_DEVICE_PLUGIN_IMAGE,
    SYSTEM_POOL,
    aad_profile,
    addon_profiles,
    api_server_access_profile,
    container_log_settings_manifest,
    general_purpose_pools,
    kubeconfig_format,
    managed_cluster_profile,
    merged_authorized_ranges,
    network_contributor_scopes,
    network_profile,
    nvidia_device_plugin_manifest,
    pool_profile,
    security_profile,
    system_pool_profile,
)
from contract.loading import validate_stack_config
from contract.stack import ACCELERATOR_LABEL, StackConfig, toleration_for

ADMIN_GROUP = "00000000-0000-0000-0000-000000000001"
GPU_POOL = {"name": "gpu", "vmSize": "Standard_NC4as_T4_v3", "accelerator": "gpu"}
CPU_POOL = {"name": "cpu", "vmSize": "Standard_D4ds_v5", "labels": {"team": "ml"}, "taints": ["dedicated=ml:NoSchedule"]}
# Opaque stand-ins for the Outputs the cluster passes through untouched.
SUBNET_ID = object()
WORKSPACE_ID = object()


def dev(**values) -> StackConfig:
    cluster = {"adminGroupObjectIds": [ADMIN_GROUP], **values.pop("cluster", {})}
    return validate_stack_config({"purpose": "DevTest", "cluster": cluster, **values}, "westeurope")


def fast_prod(**values) -> StackConfig:
    cluster = {"systemPool": {"count": 3}, "adminGroupObjectIds": [ADMIN_GROUP], **values.pop("cluster", {})}
    return validate_stack_config({"purpose": "FastProd", "cluster": cluster, **values}, "westeurope")


# --------------------------------------------------------------------------- network


def test_kubenet_uses_calico_and_a_pod_cidr():
    profile = network_profile(dev(network={"plugin": "kubenet"}))
    assert profile["network_plugin"] == "kubenet" and profile["network_policy"] == "calico"
    assert profile["pod_cidr"] == "10.244.0.0/16"
    assert "network_plugin_mode" not in profile


def test_flat_azure_cni_has_no_pod_cidr_and_no_overlay():
    profile = network_profile(dev(network={"plugin": "azure"}))
    assert profile["network_plugin"] == "azure" and profile["network_policy"] == "azure"
    assert "pod_cidr" not in profile and "network_plugin_mode" not in profile


def test_overlay_is_azure_cni_in_overlay_mode_with_the_configured_pod_cidr():
    profile = network_profile(dev(network={"plugin": "azureOverlay", "podCidr": "192.168.0.0/16"}))
    assert (profile["network_plugin"], profile["network_plugin_mode"]) == ("azure", "overlay")
    assert profile["pod_cidr"] == "192.168.0.0/16"


@pytest.mark.parametrize(("mode", "outbound"), [("loadBalancer", "loadBalancer"), ("external", "userDefinedRouting")])
def test_outbound_type_follows_the_egress_mode(mode, outbound):
    egress = {"mode": mode, **({"nextHopIp": "10.225.0.4"} if mode == "external" else {})}
    assert network_profile(dev(egress=egress))["outbound_type"] == outbound


# --------------------------------------------------------------------------- pools


def test_system_pool_is_fixed_size_on_the_node_subnet():
    profile = system_pool_profile(fast_prod(network={"plugin": "azure"}), SUBNET_ID)
    assert (profile["name"], profile["mode"], profile["count"]) == (SYSTEM_POOL, "System", 3)
    assert profile["enable_auto_scaling"] is False
    assert profile["vnet_subnet_id"] is SUBNET_ID
    assert profile["max_pods"] == 30  # flat Azure CNI's default
    assert profile["orchestrator_version"] == "1.36"  # the default: supported on AKS today


def test_system_pool_takes_workloads_while_no_user_pool_can():
    # dev: the only pool; prod-like: the GPU pool is tainted; a tainted CPU pool takes only what tolerates it.
    for config in (dev(), fast_prod(pools=[GPU_POOL]), dev(pools=[CPU_POOL])):
        assert general_purpose_pools(config) == []
        assert "node_taints" not in system_pool_profile(config, SUBNET_ID)


def test_system_pool_is_reserved_for_critical_addons_once_a_general_pool_exists():
    config = fast_prod(pools=[GPU_POOL, CPU_POOL, {"name": "general", "vmSize": "Standard_D4ds_v5"}])
    assert [p.name for p in general_purpose_pools(config)] == ["general"]
    assert system_pool_profile(config, SUBNET_ID)["node_taints"] == [CRITICAL_ADDONS_ONLY_TAINT] == ["CriticalAddonsOnly=true:NoSchedule"]
    # The general pool itself stays untainted: it is where the router and CPU models go.
    general = config.pools[2]
    assert pool_profile(general, config, SUBNET_ID)["node_taints"] == []


def test_gpu_pool_carries_its_taint_label_and_driver():
    config = dev(pools=[GPU_POOL])
    profile = pool_profile(config.pools[0], config, SUBNET_ID)
    assert profile["node_taints"] == ["sku=gpu:NoSchedule"]
    assert profile["node_labels"] == {ACCELERATOR_LABEL: "gpu"}
    assert profile["gpu_profile"] == {"driver": "Install"}
    assert "gpu_instance_profile" not in profile
    assert (profile["min_count"], profile["count"], profile["enable_auto_scaling"]) == (1, 1, True)


def test_mig_pool_sets_the_gpu_instance_profile():
    config = dev(pools=[{"name": "a100", "vmSize": "Standard_NC24ads_A100_v4", "accelerator": "gpu", "migProfile": "MIG1g"}])
    assert pool_profile(config.pools[0], config, SUBNET_ID)["gpu_instance_profile"] == "MIG1g"


def test_cpu_pool_keeps_user_labels_and_taints_and_gets_no_gpu_settings():
    config = dev(pools=[{**CPU_POOL, "minCount": 0}])
    profile = pool_profile(config.pools[0], config, SUBNET_ID)
    assert profile["node_labels"] == {"team": "ml"} and profile["node_taints"] == ["dedicated=ml:NoSchedule"]
    assert "gpu_profile" not in profile
    assert (profile["min_count"], profile["count"]) == (0, 1)  # a pool that may scale to zero starts with one node


# --------------------------------------------------------------------------- API server, identity, security


def test_authorized_ranges_merge_sorted_without_duplicates():
    assert merged_authorized_ranges(["203.0.113.0/24", "198.51.100.0/24"], ["20.0.0.1/32", "203.0.113.0/24"]) == [
        "198.51.100.0/24", "20.0.0.1/32", "203.0.113.0/24",
    ]


def test_private_cluster_ignores_any_allowlist():
    config = dev(cluster={"privateCluster": True})
    assert api_server_access_profile(config, ["20.0.0.1/32"]) == {"enable_private_cluster": True, "private_dns_zone": "system", "disable_run_command": True}


def test_public_cluster_is_limited_to_the_allowlist_or_open():
    allowlist = object()
    assert api_server_access_profile(dev(), allowlist) == {"authorized_ip_ranges": allowlist, "disable_run_command": True}
    assert api_server_access_profile(dev(), None) == {"disable_run_command": True}


@pytest.mark.parametrize("cluster", [{}, {"privateCluster": True}, {"authorizedIpRanges": ["203.0.113.0/24"]}])
def test_run_command_is_off_whatever_the_exposure(cluster):
    config = fast_prod(cluster=cluster)
    assert api_server_access_profile(config, config.cluster.authorized_ip_ranges or None)["disable_run_command"] is True


def test_admin_groups_enable_managed_entra_with_kubernetes_rbac():
    assert aad_profile(dev()) == {"managed": True, "enable_azure_rbac": False, "admin_group_object_ids": [ADMIN_GROUP]}
    assert aad_profile(dev(cluster={"adminGroupObjectIds": [], "disableLocalAccounts": False})) is None


def test_defender_reports_to_the_workspace_when_on():
    on = security_profile(dev(defender=True), WORKSPACE_ID)
    assert on["defender"]["log_analytics_workspace_resource_id"] is WORKSPACE_ID
    assert on["defender"]["security_monitoring"] == {"enabled": True}
    off = security_profile(dev(defender=False), WORKSPACE_ID)
    assert "defender" not in off
    assert on["workload_identity"] == off["workload_identity"] == {"enabled": True}


@pytest.mark.parametrize("defender", [True, False])
def test_image_cleaner_is_always_on_weekly(defender):
    profile = security_profile(dev(defender=defender), WORKSPACE_ID)
    assert profile["image_cleaner"] == {"enabled": True, "interval_hours": IMAGE_CLEANER_INTERVAL_HOURS}
    assert 24 <= IMAGE_CLEANER_INTERVAL_HOURS <= 24 * 90  # AKS accepts 24 hours to 3 months


def test_container_insights_is_the_omsagent_addon_and_azure_policy_is_always_on():
    on = addon_profiles(dev(monitoring={"containerInsights": True}), WORKSPACE_ID)
    assert on == {
        "azurepolicy": {"enabled": True},
        # Managed-identity authentication: the legacy agent authentication ingests nothing after 2026-09-30.
        "omsagent": {"enabled": True, "config": {"logAnalyticsWorkspaceResourceID": WORKSPACE_ID, "useAADAuth": "true"}},
    }
    assert addon_profiles(dev(monitoring={"containerInsights": False}), WORKSPACE_ID) == {"azurepolicy": {"enabled": True}}


def test_managed_cluster_profile_assembles_the_cluster():
    # 1.33 left community support in July 2026: only long-term support (Premium) keeps it.
    config = fast_prod(cluster={"skuTier": "Premium", "supportPlan": "AKSLongTermSupport", "kubernetesVersion": "1.33"}, defender=False)
    profile = managed_cluster_profile(config, node_subnet_id=SUBNET_ID, workspace_id=WORKSPACE_ID, authorized_ip_ranges=None)
    assert profile["sku"] == {"name": "Base", "tier": "Premium"} and profile["support_plan"] == "AKSLongTermSupport"
    assert profile["kubernetes_version"] == "1.33"
    assert profile["enable_rbac"] is True and profile["disable_local_accounts"] is True
    assert profile["oidc_issuer_profile"] == {"enabled": True}
    assert profile["auto_upgrade_profile"] == {"upgrade_channel": "patch", "node_os_upgrade_channel": "NodeImage"}
    assert profile["api_server_access_profile"] == {"disable_run_command": True}
    assert "defender" not in profile["security_profile"]
    assert profile["security_profile"]["image_cleaner"]["enabled"] is True
    assert profile["addon_profiles"]["azurepolicy"] == {"enabled": True}
    assert [p["name"] for p in profile["agent_pool_profiles"]] == [SYSTEM_POOL]
    assert profile["agent_pool_profiles"][0]["vnet_subnet_id"] is SUBNET_ID
    assert profile["network_profile"] == network_profile(config)


def test_the_route_table_is_a_scope_only_when_there_is_one():
    route_table = object()
    assert network_contributor_scopes(SUBNET_ID, None) == {"node-subnet": SUBNET_ID}
    assert network_contributor_scopes(SUBNET_ID, route_table) == {"node-subnet": SUBNET_ID, "route-table": route_table}


def test_entra_only_clusters_get_an_exec_kubeconfig():
    assert kubeconfig_format(dev()) == "exec"
    assert kubeconfig_format(dev(cluster={"disableLocalAccounts": False})) is None


# --------------------------------------------------------------------------- manifests


def test_toleration_parses_key_value_and_effect():
    assert toleration_for("sku=gpu:NoSchedule") == {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}


def test_device_plugin_runs_only_on_gpu_nodes_tolerating_only_the_gpu_taint():
    manifest = nvidia_device_plugin_manifest(dev(pools=[GPU_POOL, {"name": "fpga", "vmSize": "Standard_NP10s", "accelerator": "fpga"}]))
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {ACCELERATOR_LABEL: "gpu"}
    assert pod["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    (container,) = pod["containers"]
    assert container["image"] == NVIDIA_DEVICE_PLUGIN_IMAGE
    assert {"name": "MIG_STRATEGY", "value": "none"} in container["env"]
    assert manifest["spec"]["selector"]["matchLabels"] == manifest["spec"]["template"]["metadata"]["labels"]
    assert (manifest["metadata"]["name"], manifest["metadata"]["namespace"]) == ("nvidia-device-plugin", "kube-system")


def test_device_plugin_uses_the_single_mig_strategy_with_a_mig_pool():
    config = dev(pools=[GPU_POOL, {"name": "a100", "vmSize": "Standard_NC24ads_A100_v4", "accelerator": "gpu", "migProfile": "MIG1g"}])
    env = nvidia_device_plugin_manifest(config)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MIG_STRATEGY", "value": "single"} in env


def test_container_log_settings_select_the_v2_schema():
    manifest = container_log_settings_manifest()
    assert (manifest["metadata"]["name"], manifest["metadata"]["namespace"]) == ("container-azm-ms-agentconfig", "kube-system")
    settings = manifest["data"]["log-data-collection-settings"]
    assert 'containerlog_schema_version = "v2"' in settings
    assert settings.count('exclude_namespaces = ["kube-system", "gatekeeper-system"]') == 2


def test_the_new_settings_are_argument_names_of_the_installed_azure_native_sdk():
    """The builders' nested dicts, fed to the SDK's typed input classes: a misspelt argument raises TypeError."""
    import pulumi_azure_native.containerservice as cs

    config = fast_prod(pools=[GPU_POOL, {"name": "general", "vmSize": "Standard_D4ds_v5"}])
    profile = managed_cluster_profile(config, node_subnet_id="subnet", workspace_id="workspace", authorized_ip_ranges=["203.0.113.0/24"])
    cs.ManagedClusterAPIServerAccessProfileArgs(**profile["api_server_access_profile"])
    cs.ManagedClusterSecurityProfileImageCleanerArgs(**profile["security_profile"]["image_cleaner"])
    for addon in profile["addon_profiles"].values():
        cs.ManagedClusterAddonProfileArgs(**addon)
    [system] = profile["agent_pool_profiles"]
    cs.ManagedClusterAgentPoolProfileArgs(**system)
    with pytest.raises(TypeError):
        cs.ManagedClusterAPIServerAccessProfileArgs(disable_run_commands=True)
