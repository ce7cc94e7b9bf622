"""Whole-graph tests: the real program under mocks, asserting on real inputs of real Azure/Kubernetes types."""

import itertools

import pytest

from components.cluster_profiles import EXPLICIT_NETWORK_FIELDS
from components.egress import egress_allowlist
from contract.loading import validate_stack_config
from tests.pulumi_harness import fresh_run, run_program, with_config

AKS = "azure-native:containerservice:ManagedCluster"
POOL = "azure-native:containerservice:AgentPool"
SUBNET = "azure-native:network:Subnet"
ROUTE = "azure-native:network:Route"
RCG = "azure-native:network:FirewallPolicyRuleCollectionGroup"
FIREWALL = "azure-native:network:AzureFirewall"
ROLE = "azure-native:authorization:RoleAssignment"
ACR = "azure-native:containerregistry:Registry"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
K8S_PROVIDER = "pulumi:providers:kubernetes"


def test_dev_stack_graph(dev_run):
    cluster = dev_run.one(AKS)
    profile = cluster.inputs["networkProfile"]
    assert profile["networkPlugin"] == "kubenet" and profile["networkPolicy"] == "calico"
    assert profile["outboundType"] == "loadBalancer" and profile["podCidr"] == "10.244.0.0/16"
    assert [p["name"] for p in cluster.inputs["agentPoolProfiles"]] == ["system"]
    assert cluster.inputs["agentPoolProfiles"][0]["count"] == 1
    assert cluster.inputs["enableRBAC"] is True and cluster.inputs["oidcIssuerProfile"] == {"enabled": True}
    assert cluster.inputs["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert "defender" not in cluster.inputs["securityProfile"]
    assert cluster.inputs["addonProfiles"]["omsagent"]["enabled"] is True
    assert cluster.protect is False
    assert not dev_run.of_type(POOL) and not dev_run.of_type(DAEMONSET) and not dev_run.of_type(FIREWALL)
    assert dev_run.one(ACR).inputs["adminUserEnabled"] is False
    assert dev_run.outputs["network"]["plugin"] == "kubenet"
    assert "kubeconfig" in dev_run.secret_outputs


def test_prod_stack_graph(prod_run):
    cluster = prod_run.one(AKS)
    profile = cluster.inputs["networkProfile"]
    assert (profile["networkPlugin"], profile["networkPluginMode"]) == ("azure", "overlay")
    assert profile["outboundType"] == "userDefinedRouting"
    assert cluster.protect is True and prod_run.one(ACR).protect is True
    assert cluster.inputs["agentPoolProfiles"][0]["count"] == 3
    assert cluster.inputs["disableLocalAccounts"] is True
    assert cluster.inputs["aadProfile"]["adminGroupObjectIDs"] == ["00000000-0000-0000-0000-000000000000"]
    assert cluster.inputs["securityProfile"]["defender"]["securityMonitoring"] == {"enabled": True}
    # The firewall's public IPs are added to the API server's authorized ranges.
    firewall_ips = [ip.outputs["ipAddress"] for ip in prod_run.of_type("azure-native:network:PublicIPAddress")]
    assert cluster.inputs["apiServerAccessProfile"]["authorizedIPRanges"] == sorted(["203.0.113.0/24", *(f"{ip}/32" for ip in firewall_ips)])
    gpu = prod_run.one(POOL)
    assert gpu.inputs["vmSize"] == "Standard_NC24ads_A100_v4" and gpu.inputs["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert gpu.inputs["nodeLabels"] == {"aks-inference/accelerator": "gpu"}
    assert gpu.inputs["enableAutoScaling"] is True and (gpu.inputs["minCount"], gpu.inputs["maxCount"]) == (1, 4)
    assert gpu.ignore_changes == ["count"]
    plugin = prod_run.one(DAEMONSET)
    tolerations = plugin.inputs["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in tolerations
    provider = prod_run.one(K8S_PROVIDER)
    assert plugin.provider.startswith(provider.urn)
    assert provider.inputs["clusterIdentifier"] == cluster.outputs["id"]


def test_firewall_route_and_rules_match_the_allowlist(prod_run):
    routes = {r.inputs["routeName"]: r.inputs for r in prod_run.of_type(ROUTE)}
    firewall = prod_run.one(FIREWALL)
    private_ip = firewall.outputs["ipConfigurations"][0]["privateIPAddress"]
    assert routes["default-egress"]["addressPrefix"] == "0.0.0.0/0"
    assert routes["default-egress"]["nextHopType"] == "VirtualAppliance"
    assert routes["default-egress"]["nextHopIpAddress"] == private_ip == "10.225.0.4"
    node_subnet = next(s for s in prod_run.of_type(SUBNET) if s.inputs["subnetName"] == "nodes")
    route_table = prod_run.one("azure-native:network:RouteTable")
    assert node_subnet.inputs["routeTable"]["id"] == route_table.outputs["id"]
    groups = {g.inputs["ruleCollectionGroupName"]: g for g in prod_run.of_type(RCG)}
    assert groups["aks-network"].urn in groups["aks-application"].dependencies  # chained, never concurrent
    covered = set()
    for group in groups.values():
        for collection in group.inputs["ruleCollections"]:
            for rule in collection["rules"]:
                ports = [str(p["port"]) for p in rule.get("protocols", [])] or rule["destinationPorts"]
                for destination in rule.get("targetFqdns", []) + rule.get("fqdnTags", []) + rule.get(
                    "destinationFqdns", []
                ) + rule.get("destinationAddresses", []):
                    covered |= {(destination, port) for port in ports}
    expected = {(r["destination"], str(r["port"])) for r in prod_run.outputs["egressAllowlist"]}
    assert covered == expected
    policy = prod_run.one("azure-native:network:FirewallPolicy")
    assert policy.inputs["dnsSettings"]["enableProxy"] is True and policy.inputs["threatIntelMode"] == "Deny"


PLUGINS = {
    "kubenet": {"plugin": "kubenet"},
    "azure": {"plugin": "azure", "nodeSubnetCidr": "10.224.0.0/16"},
    "azureOverlay": {"plugin": "azureOverlay"},
}
EGRESS = {
    "loadBalancer": {"mode": "loadBalancer"},
    "firewall": {"mode": "firewall", "firewallSubnetCidr": "10.225.0.0/26"},
    "external": {"mode": "external", "nextHopIp": "10.100.0.4"},
}
# External egress needs a path to its next hop: the hub that holds the firewall.
HUB = {"vnetId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-hub/providers/Microsoft.Network/virtualNetworks/vnet-hub",
       "addressSpace": ["10.100.0.0/16"]}


@pytest.mark.parametrize("plugin,egress", list(itertools.product(PLUGINS, EGRESS)))
def test_every_plugin_and_egress_mode(plugin, egress):
    network = {"vnetCidr": "10.224.0.0/12", "nodeSubnetCidr": "10.224.0.0/16", **PLUGINS[plugin], **({"hub": HUB} if egress == "external" else {})}
    run = run_program("dev", with_config("dev", network=network, egress=EGRESS[egress]))
    assert run.error is None, run.error
    profile = run.one(AKS).inputs["networkProfile"]
    # Every force-new field that applies to this plugin is set explicitly.
    applicable = set(EXPLICIT_NETWORK_FIELDS) - ({"podCidr"} if plugin == "azure" else set())
    applicable -= set() if plugin == "azureOverlay" else {"networkPluginMode"}
    assert applicable <= set(profile)
    assert profile["networkPlugin"] == ("kubenet" if plugin == "kubenet" else "azure")
    assert ("podCidr" in profile) == (plugin != "azure")
    assert profile["outboundType"] == ("loadBalancer" if egress == "loadBalancer" else "userDefinedRouting")
    routes = {r.inputs["routeName"]: r.inputs for r in run.of_type(ROUTE)}
    assert bool(run.of_type(FIREWALL)) == (egress == "firewall")
    if egress == "external":
        assert routes["default-egress"]["nextHopIpAddress"] == "10.100.0.4"
    if egress == "loadBalancer":
        # kubenet always gets a table of ours (AKS writes the pod routes); otherwise there is none.
        assert not routes and bool(run.of_type("azure-native:network:RouteTable")) == (plugin == "kubenet")
    # The control plane may write to the route table AKS uses (kubenet pod routes, UDR).
    grants = {r.name for r in run.of_type(ROLE)}
    assert ("aks-inference-cluster-control-plane-route-table" in grants) == (egress != "loadBalancer" or plugin == "kubenet")
    cluster = run.one(AKS)
    if egress != "loadBalancer":
        route_urns = {r.urn for r in run.of_type(ROUTE) if r.inputs["routeName"] == "default-egress"}
        assert route_urns <= set(cluster.dependencies)  # UDR clusters need the default route first
    allowlist = run.outputs["egressAllowlist"]
    assert allowlist == [
        r.as_output()
        for r in egress_allowlist(
            validate_stack_config(
                {k.split(":", 1)[1]: v for k, v in with_config("dev", network=network, egress=EGRESS[egress]).items() if k.startswith("aks-inference:")},
                "westeurope",
            ),
            run.outputs["registryLoginServer"],
            next((r.inputs["accountName"] for r in run.of_type("azure-native:storage:StorageAccount")), None),
        )
    ]


def test_same_inputs_give_identical_resources():
    first, second = fresh_run("prod"), fresh_run("prod")  # two real runs, not the harness's one remembered
    snapshot = lambda run: [(r.urn, r.inputs, r.dependencies, r.protect, r.ignore_changes) for r in run.resources]  # noqa: E731
    assert snapshot(first) == snapshot(second)
    assert first.outputs == second.outputs


def test_gpu_pool_vm_size_change_touches_only_that_pool():
    config = with_config("prod")
    before = run_program("prod", config)
    pools = config["aks-inference:pools"]
    config["aks-inference:pools"] = [{**pools[0], "vmSize": "Standard_NC48ads_A100_v4"}]
    after = run_program("prod", config)
    changed = {r.urn for r in before.resources} ^ {r.urn for r in after.resources}
    assert not changed
    differing = [b.type for b, a in zip(before.resources, after.resources) if b.inputs != a.inputs]
    assert differing == [POOL]
    assert after.one(POOL).inputs["vmSize"] == "Standard_NC48ads_A100_v4"


FREE_FORM_MAPS = {"tags", "config", "nodeLabels"}


def _snake_keys(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key:
                yield f"{path}.{key}"
            if key not in FREE_FORM_MAPS:
                yield from _snake_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _snake_keys(item, f"{path}[{index}]")


def test_no_python_style_keys_reach_azure(prod_run, dev_run):
    """Plain dicts in polymorphic inputs are not translated to camelCase; Azure would ignore them."""
    for run in (prod_run, dev_run):
        for resource in run.resources:
            if resource.type.startswith("azure-native:"):
                assert list(_snake_keys(resource.inputs)) == [], resource.name


def test_container_insights_keeps_json_logs_queryable():
    """ContainerLogV2 parses the router's and the model servers' JSON lines into LogMessage (README: Logs)."""
    run = run_program("dev")
    assert run.error is None, run.error
    settings = run.one("kubernetes:core/v1:ConfigMap", "aks-inference-cluster-container-insights-settings").inputs
    assert (settings["metadata"]["name"], settings["metadata"]["namespace"]) == ("container-azm-ms-agentconfig", "kube-system")
    assert 'containerlog_schema_version = "v2"' in settings["data"]["log-data-collection-settings"]
    off = run_program("dev", with_config("dev", monitoring={"containerInsights": False, "retentionDays": 30}))
    assert off.error is None, off.error
    assert not [c for c in off.of_type("kubernetes:core/v1:ConfigMap") if c.inputs["metadata"]["name"] == "container-azm-ms-agentconfig"]
