"""Bad configs: each fails before any resource is registered, naming the key, the value and what is allowed."""

import pulumi
import pytest

from tests.pulumi_harness import run_program, with_config

DEV_NETWORK = {"plugin": "kubenet", "vnetCidr": "10.224.0.0/12", "nodeSubnetCidr": "10.224.0.0/16"}
GPU_POOL = {"name": "gpu", "vmSize": "Standard_NC24ads_A100_v4", "accelerator": "gpu", "minCount": 1, "maxCount": 2}
PROD_CLUSTER = {"systemPool": {"count": 3}, "disableLocalAccounts": False}

# (id, config changes on the dev stack, key that must be named, text that must appear)
BAD_CONFIGS = [
    ("purpose-unknown", {"purpose": "Prod"}, "purpose", "DevTest"),
    ("purpose-missing", {"purpose": None}, "purpose", "required"),
    ("unknown-top-key", {"netwrok": {}}, "aks-inference:netwrok", "did you mean aks-inference:network"),
    ("unknown-nested-key", {"network": {**DEV_NETWORK, "vnetCider": "10.0.0.0/8"}}, "network.vnetCider", "did you mean 'vnetCidr'"),
    ("plugin-unknown", {"network": {**DEV_NETWORK, "plugin": "cilium"}}, "network.plugin", "azureOverlay"),
    ("cidr-syntax", {"network": {**DEV_NETWORK, "vnetCidr": "10.224.0.0/33"}}, "network.vnetCidr", "IPv4 CIDR"),
    ("cidr-host-bits", {"network": {**DEV_NETWORK, "vnetCidr": "10.224.0.1/12"}}, "network.vnetCidr", "host bits"),
    ("node-subnet-outside-vnet", {"network": {**DEV_NETWORK, "nodeSubnetCidr": "192.168.0.0/24"}}, "network.nodeSubnetCidr", "inside network.vnetCidr"),
    ("service-cidr-in-vnet", {"network": {**DEV_NETWORK, "serviceCidr": "10.225.0.0/16", "dnsServiceIp": "10.225.0.10"}}, "network.serviceCidr", "must not overlap network.vnetCidr"),
    ("service-cidr-forbidden", {"network": {**DEV_NETWORK, "serviceCidr": "172.30.0.0/16", "dnsServiceIp": "172.30.0.10"}}, "network.serviceCidr", "AKS reserves"),
    ("service-cidr-too-big", {"network": {**DEV_NETWORK, "vnetCidr": "10.224.0.0/16", "serviceCidr": "10.0.0.0/12", "dnsServiceIp": "10.0.0.10"}}, "network.serviceCidr", "smaller than a /12"),
    ("pod-cidr-overlaps-vnet", {"network": {**DEV_NETWORK, "podCidr": "10.230.0.0/16"}}, "network.podCidr", "must not overlap network.vnetCidr"),
    ("pod-cidr-with-flat-cni", {"network": {**DEV_NETWORK, "plugin": "azure", "podCidr": "10.244.0.0/16"}}, "network.podCidr", "only used with plugin"),
    ("dns-ip-outside-services", {"network": {**DEV_NETWORK, "dnsServiceIp": "10.1.0.10"}}, "network.dnsServiceIp", "inside network.serviceCidr"),
    ("dns-ip-first-address", {"network": {**DEV_NETWORK, "dnsServiceIp": "10.0.0.1"}}, "network.dnsServiceIp", "first"),
    ("dns-ip-syntax", {"network": {**DEV_NETWORK, "dnsServiceIp": "10.0.0"}}, "network.dnsServiceIp", "IPv4 address"),
    ("max-pods-range", {"network": {**DEV_NETWORK, "maxPods": 500}}, "network.maxPods", "250"),
    ("flat-cni-subnet-too-small", {"network": {**DEV_NETWORK, "plugin": "azure", "nodeSubnetCidr": "10.224.0.0/26"}}, "network.nodeSubnetCidr", "67 addresses; allowed: a /25 or larger"),
    ("firewall-needs-subnet", {"egress": {"mode": "firewall"}}, "egress.firewallSubnetCidr", "required"),
    ("firewall-subnet-too-small", {"egress": {"mode": "firewall", "firewallSubnetCidr": "10.225.0.0/27"}}, "egress.firewallSubnetCidr", "/26 or larger"),
    ("firewall-subnet-outside-vnet", {"egress": {"mode": "firewall", "firewallSubnetCidr": "192.168.0.0/26"}}, "egress.firewallSubnetCidr", "inside network.vnetCidr"),
    ("firewall-subnet-overlaps-nodes", {"egress": {"mode": "firewall", "firewallSubnetCidr": "10.224.0.0/26"}}, "egress.firewallSubnetCidr", "must not overlap"),
    ("external-needs-next-hop", {"egress": {"mode": "external"}}, "egress.nextHopIp", "required"),
    ("next-hop-public", {"egress": {"mode": "external", "nextHopIp": "8.8.8.8"}}, "egress.nextHopIp", "private"),
    ("extra-fqdn-syntax", {"egress": {"extraFqdns": ["https://pypi.org"]}}, "egress.extraFqdns[0]", "host name"),
    ("threat-intel-mode", {"egress": {"threatIntelMode": "Block"}}, "egress.threatIntelMode", "Deny"),
    ("k8s-version", {"cluster": {"kubernetesVersion": "latest", "disableLocalAccounts": False}}, "cluster.kubernetesVersion", "1.34"),
    ("retired-system-size", {"cluster": {"systemPool": {"vmSize": "Standard_NC6s_v3"}, "disableLocalAccounts": False}}, "cluster.systemPool.vmSize", "Standard_NC24ads_A100_v4"),
    ("prod-needs-3-system-nodes", {"purpose": "FastProd", "cluster": {"systemPool": {"count": 2}, "disableLocalAccounts": False}}, "cluster.systemPool.count", "at least 3"),
    ("dense-prod-needs-3-system-nodes", {"purpose": "DenseProd", "cluster": {"disableLocalAccounts": False}}, "cluster.systemPool.count", "at least 3"),
    ("local-accounts-off-needs-admins", {"cluster": {"disableLocalAccounts": True}}, "cluster.adminGroupObjectIds", "Entra group"),
    ("admin-group-guid", {"cluster": {"adminGroupObjectIds": ["admins"]}}, "cluster.adminGroupObjectIds[0]", "GUID"),
    ("private-with-ranges", {"cluster": {"privateCluster": True, "authorizedIpRanges": ["203.0.113.0/24"], "disableLocalAccounts": False}}, "cluster.authorizedIpRanges", "private cluster"),
    ("sku-tier", {"cluster": {"skuTier": "Gold", "disableLocalAccounts": False}}, "cluster.skuTier", "Premium"),
    ("pool-name-rules", {"pools": [{**GPU_POOL, "name": "GPU-pool"}]}, "pools[0].name", "lowercase"),
    ("pool-name-system", {"pools": [{**GPU_POOL, "name": "system"}]}, "pools[0].name", "system"),
    ("pool-names-unique", {"pools": [GPU_POOL, GPU_POOL]}, "pools[1].name", "unique"),
    ("pool-min-over-max", {"pools": [{**GPU_POOL, "minCount": 3, "maxCount": 2}]}, "pools[0].minCount", "maxCount"),
    ("pool-retired-gpu", {"pools": [{**GPU_POOL, "vmSize": "Standard_NC6s_v3"}]}, "pools[0].vmSize", "retired on 2025-09-30"),
    ("pool-gpu-on-cpu-size", {"pools": [{**GPU_POOL, "vmSize": "Standard_D8ds_v5"}]}, "pools[0].vmSize", "not a GPU size"),
    ("pool-gpu-size-without-accelerator", {"pools": [{**GPU_POOL, "accelerator": "none"}]}, "pools[0].accelerator", "accelerator size"),
    ("pool-mig-on-t4", {"pools": [{**GPU_POOL, "vmSize": "Standard_NC4as_T4_v3", "migProfile": "MIG1g"}]}, "pools[0].migProfile", "A100/H100"),
    ("pool-mig-profile-unknown", {"pools": [{**GPU_POOL, "migProfile": "MIG5g"}]}, "pools[0].migProfile", "MIG7g"),
    ("pool-fpga-on-gpu-size", {"pools": [{**GPU_POOL, "accelerator": "fpga"}]}, "pools[0].vmSize", "not an FPGA size"),
    ("pool-taint-syntax", {"pools": [{**GPU_POOL, "taints": ["dedicated"]}]}, "pools[0].taints[0]", "NoSchedule"),
    ("pool-label-key", {"pools": [{**GPU_POOL, "labels": {"bad key": "x"}}]}, "pools[0].labels", "label key"),
    ("registry-private-needs-premium", {"registry": {"sku": "Standard", "publicNetworkAccess": False}}, "registry.publicNetworkAccess", "Premium"),
    ("retention-range", {"monitoring": {"retentionDays": 7}}, "monitoring.retentionDays", "30"),
    ("defender-type", {"defender": "yes please"}, "defender", "boolean"),
    ("location-missing", {"azure_native_location": None}, "azure-native:location", "required"),
]


@pytest.mark.parametrize("changes,key,text", [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_fails_before_any_resource(changes, key, text):
    run = run_program("dev", with_config("dev", **changes))
    assert isinstance(run.error, pulumi.RunError), run.error
    message = str(run.error)
    line = next((line for line in message.splitlines() if line.strip().startswith(f"- {key}:")), None)
    assert line is not None, message
    assert text in line, line
    assert run.resources == []


def test_every_problem_is_reported_at_once():
    run = run_program(
        "dev",
        with_config(
            "dev",
            purpose="Prod",
            network={**DEV_NETWORK, "dnsServiceIp": "10.1.0.10"},
            egress={"mode": "external"},
            pools=[{**GPU_POOL, "minCount": 5}],
        ),
    )
    message = str(run.error)
    for key in ("purpose", "network.dnsServiceIp", "egress.nextHopIp", "pools[0].minCount"):
        assert f"- {key}:" in message
    assert message.startswith("4 problem(s)")
    assert run.resources == []
