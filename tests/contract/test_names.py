"""Every Azure name derived from the stack name meets Azure's rule for its resource type, or the stack is
refused before anything is registered, with the rule and the longest stack name that fits."""

from __future__ import annotations

import pytest

from contract.errors import ConfigError
from contract.loading import load_stack
from contract.names import AKS_DNS_PREFIX, FIREWALL, STACK_KEY, STORAGE_ACCOUNT, Names

BASE = {"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ["00000000-0000-0000-0000-000000000001"]}}


def stack_problems(stack: str) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        load_stack(BASE, "westeurope", deployment=("aks-inference", stack))
    assert {issue.key for issue in excinfo.value.issues} == {STACK_KEY}
    return [issue.problem for issue in excinfo.value.issues]


@pytest.mark.parametrize(
    ("stack", "resource"),
    [
        ("my_stack", "AKS DNS prefix"),  # underscores: fine for the cluster, not for its DNS prefix or workspace
        ("my_stack", "Log Analytics workspace"),
        ("a.b", "AKS cluster"),
        ("a.b", "managed identity"),
        ("dev-", "AKS DNS prefix"),  # must end alphanumeric
        ("x" * 47, "Azure Firewall"),  # fw-aksinf-<stack> is at most 56
        ("x" * 48, "AKS DNS prefix"),  # aksinf-<stack> is at most 54
        ("prod(1)", "AKS cluster"),
    ],
)
def test_stack_names_azure_would_refuse_are_config_errors(stack, resource):
    problems = stack_problems(stack)
    assert any(f"makes the {resource} name" in p for p in problems), problems
    assert all("at most 46 letters, digits and '-'" in p for p in problems)


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-westeurope-2", "x" * 46, "Team-A"])
def test_good_stack_names_make_valid_names_everywhere(stack):
    names = load_stack(BASE, "westeurope", deployment=("aks-inference", stack)).names
    assert names == Names("aks-inference", stack, "westeurope")
    for rule, name in names.derived(["diabetes"]):
        assert rule.minimum <= len(name) <= rule.maximum and rule.pattern.fullmatch(name), (rule.resource, name)


def test_global_names_stay_valid_and_distinct_for_any_stack():
    """Registry and storage account names are global: hashed, lowercase, within their length for a 46-char stack."""
    long = Names("aks-inference", "x" * 46, "westeurope")
    assert 5 <= len(long.registry) <= 50 and long.registry.isalnum()
    assert STORAGE_ACCOUNT.pattern.fullmatch(long.model_data_account) and len(long.model_data_account) <= STORAGE_ACCOUNT.maximum
    assert Names("p", "dev", "westeurope").registry != Names("p", "dev", "northeurope").registry


def test_the_rules_match_azures_published_limits():
    """resource-name-rules: AKS dnsPrefix 1-54 alphanumerics and hyphens; Azure Firewall 1-56."""
    assert (AKS_DNS_PREFIX.minimum, AKS_DNS_PREFIX.maximum) == (1, 54)
    assert AKS_DNS_PREFIX.pattern.fullmatch("a-b1") and not AKS_DNS_PREFIX.pattern.fullmatch("a_b")
    assert FIREWALL.maximum == 56
