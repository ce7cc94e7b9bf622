"""The firewall's public IPs on the real program under mocks: as many Standard static IPs as
`egress.firewallPublicIps` (production default: Microsoft's 20), one ip configuration each with only the first in
the subnet, all of them in the API server's authorized ranges, and the first one carrying the DNAT rule, the
scoring URL and, for a router it publishes, `router.dnsLabel`."""

from __future__ import annotations

import pytest

from contract.stack import PRODUCTION_FIREWALL_PUBLIC_IPS
from tests.pulumi_harness import run_program, stack_config, with_config

PIP = "azure-native:network:PublicIPAddress"
FIREWALL = "azure-native:network:AzureFirewall"
FIRST = "aks-inference-egress-firewall-ip"
DIABETES = {"name": "diabetes", "path": "examples/models/diabetes"}
DNS_LABEL_ANNOTATION = "service.beta.kubernetes.io/azure-dns-label-name"


def _firewall_egress(stack: str, public_ips: int | None = None) -> dict:
    egress = {"mode": "firewall", "firewallSubnetCidr": "10.225.0.0/26"}
    if public_ips is not None:
        egress["firewallPublicIps"] = public_ips
    return with_config(stack, egress=egress)


def test_production_firewall_gets_the_guidance_count_each_in_one_ip_configuration(prod_run):
    ips = prod_run.of_type(PIP)
    assert len(ips) == PRODUCTION_FIREWALL_PUBLIC_IPS == 20
    assert all(ip.inputs["sku"] == {"name": "Standard", "tier": "Regional"} and ip.inputs["publicIPAllocationMethod"] == "Static" for ip in ips)
    assert len({ip.inputs["publicIpAddressName"] for ip in ips}) == 20
    # The first keeps the names it had when there was only one (no replacement of an existing firewall's address).
    assert prod_run.one(PIP, FIRST).inputs["publicIpAddressName"] == "pip-fw-aksinf-prod"
    configs = prod_run.one(FIREWALL).inputs["ipConfigurations"]
    assert [c["publicIPAddress"]["id"] for c in configs] == [prod_run.one(PIP, FIRST).outputs["id"]] + [
        prod_run.one(PIP, f"{FIRST}-{n}").outputs["id"] for n in range(2, 21)
    ]
    # Azure requires the AzureFirewallSubnet on the first configuration and refuses it on the others.
    assert "subnet" in configs[0] and not any("subnet" in c for c in configs[1:])
    assert len({c["name"] for c in configs}) == 20


def test_every_firewall_address_is_an_authorized_api_server_range(prod_run):
    ranges = prod_run.one("azure-native:containerservice:ManagedCluster").inputs["apiServerAccessProfile"]["authorizedIPRanges"]
    addresses = {f"{ip.outputs['ipAddress']}/32" for ip in prod_run.of_type(PIP)}
    assert len(addresses) == 20 and set(ranges) == addresses | {"203.0.113.0/24"}


@pytest.mark.parametrize(("stack", "public_ips", "expected"), [("dev", None, 1), ("dev", 3, 3), ("prod", 2, 2)])
def test_count_follows_the_key_or_the_purpose_default(stack, public_ips, expected):
    run = run_program(stack, _firewall_egress(stack, public_ips))
    assert run.error is None, run.error
    assert len(run.of_type(PIP)) == expected
    assert len(run.one(FIREWALL).inputs["ipConfigurations"]) == expected


def test_dnat_and_scoring_url_use_the_first_ip_which_carries_the_dns_label():
    config = stack_config("prod")
    config["aks-inference:egress"]["firewallPublicIps"] = 2
    config.update({"aks-inference:models": [DIABETES], "aks-inference:tls": {"allowInsecure": True},
                   "aks-inference:router": {"dnsLabel": "contoso-scoring"}})
    run = run_program("prod", config)
    assert run.error is None, run.error
    first, second = run.one(PIP, FIRST), run.one(PIP, f"{FIRST}-2")
    assert first.inputs["dnsSettings"] == {"domainNameLabel": "contoso-scoring"}
    assert "dnsSettings" not in second.inputs
    dnat = next(g for g in run.of_type("azure-native:network:FirewallPolicyRuleCollectionGroup") if g.inputs["ruleCollectionGroupName"] == "aks-dnat")
    assert dnat.inputs["ruleCollections"][0]["rules"][0]["destinationAddresses"] == [first.outputs["ipAddress"]]
    # The label names the firewall's address, not the router's internal load balancer (which has no public IP).
    service = next(r for r in run.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "aks-inference-router")
    assert DNS_LABEL_ANNOTATION not in service.inputs["metadata"]["annotations"]
    assert run.outputs["scoringBaseUrl"] == "http://contoso-scoring.westeurope.cloudapp.azure.com"


def test_dns_label_stays_on_the_router_service_without_dnat():
    run = run_program("dev", with_config("dev", router={"loadBalancer": "public", "dnsLabel": "contoso-dev"}))
    assert run.error is None, run.error
    service = next(r for r in run.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "aks-inference-router")
    assert service.inputs["metadata"]["annotations"] == {DNS_LABEL_ANNOTATION: "contoso-dev"}
    assert not run.of_type(PIP)


def test_public_ip_count_outside_the_firewall_mode_fails_before_any_resource():
    run = run_program("dev", with_config("dev", egress={"mode": "loadBalancer", "firewallPublicIps": 2}))
    assert "egress.firewallPublicIps" in str(run.error) and "only used when egress.mode is firewall" in str(run.error)
    assert run.resources == []
