"""Deterministic Azure resource names (no provider autonaming: previews must not churn), and Azure's
naming rules for each of them, checked before anything is registered.

Every name is derived from the stack name (and, hashed, the project and region), so a stack name that
breaks one rule breaks a `pulumi up` halfway. `Names.problems` reports each such name with the rule it
breaks. Rules: https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from contract.errors import ConfigIssue

PURPOSE_TAG = "aks-inference/purpose"  # on every Azure resource and model workload; policies read it
STACK_KEY = "pulumi:stack"  # how issues name the stack (`pulumi stack select <name>`)


@dataclass(frozen=True)
class NameRule:
    resource: str
    minimum: int
    maximum: int
    pattern: re.Pattern[str]
    allowed: str  # the rule in words


_ALNUM = "A-Za-z0-9"
_HYPHENATED = re.compile(rf"[{_ALNUM}]([-{_ALNUM}]*[{_ALNUM}])?")
_NETWORK = re.compile(rf"[{_ALNUM}]([-{_ALNUM}_.]*[{_ALNUM}_])?")
RESOURCE_GROUP = NameRule("resource group", 1, 90, re.compile(rf"[-{_ALNUM}_.()]*[-{_ALNUM}_()]"), "letters, digits, '_', '-', '.', '(' and ')', not ending in '.'")
AKS_CLUSTER = NameRule("AKS cluster", 1, 63, re.compile(rf"[{_ALNUM}]([-{_ALNUM}_]*[{_ALNUM}])?"), "letters, digits, '_' and '-', alphanumeric at both ends")
AKS_DNS_PREFIX = NameRule("AKS DNS prefix", 1, 54, _HYPHENATED, "letters, digits and '-', alphanumeric at both ends")
NODE_RESOURCE_GROUP = NameRule("AKS node resource group", 1, 80, RESOURCE_GROUP.pattern, RESOURCE_GROUP.allowed)
IDENTITY = NameRule("managed identity", 3, 128, re.compile(rf"[{_ALNUM}][-{_ALNUM}_]*"), "letters, digits, '_' and '-', starting alphanumeric")
WORKSPACE = NameRule("Log Analytics workspace", 4, 63, _HYPHENATED, "letters, digits and '-', alphanumeric at both ends")
VIRTUAL_NETWORK = NameRule("virtual network", 2, 64, _NETWORK, "letters, digits, '_', '.' and '-', starting alphanumeric, ending alphanumeric or '_'")
NETWORK_RESOURCE = NameRule("network resource", 1, 80, _NETWORK, VIRTUAL_NETWORK.allowed)
FIREWALL = NameRule("Azure Firewall", 1, 56, _NETWORK, VIRTUAL_NETWORK.allowed)
REGISTRY = NameRule("container registry", 5, 50, re.compile(rf"[{_ALNUM}]+"), "letters and digits")
STORAGE_ACCOUNT = NameRule("storage account", 3, 24, re.compile(r"[a-z0-9]+"), "lowercase letters and digits")


@dataclass(frozen=True)
class Names:
    project: str
    stack: str
    location: str

    @property
    def base(self) -> str:
        return f"aksinf-{self.stack}"

    def of(self, kind: str) -> str:
        return f"{kind}-{self.base}"

    @property
    def node_resource_group(self) -> str:
        return f"{self.of('rg')}-nodes"

    @property
    def registry(self) -> str:
        """ACR names are global, 5-50 alphanumerics: stack plus a stable hash of project/stack/region."""
        digest = hashlib.sha256(f"{self.project}/{self.stack}/{self.location}".encode()).hexdigest()[:8]
        stem = "".join(ch for ch in f"aksinf{self.stack}" if ch.isalnum()).lower()[:40]
        return f"{stem}{digest}"

    @property
    def model_data_account(self) -> str:
        """Storage account names are global, 3-24 lowercase alphanumerics: like `registry`, own salt."""
        digest = hashlib.sha256(f"{self.project}/{self.stack}/{self.location}/modeldata".encode()).hexdigest()[:8]
        stem = "".join(ch for ch in f"md{self.stack}" if ch.isalnum()).lower()[:16]
        return f"{stem}{digest}"

    def model_data_identity(self, service: str) -> str:
        return self.of(f"id-modeldata-{service}")

    def tags(self, purpose: str) -> dict[str, str]:
        """Tags on every Azure resource; policies read the purpose from them."""
        return {PURPOSE_TAG: purpose, "aks-inference/stack": self.stack, "managed-by": "pulumi"}

    def derived(self, services: Iterable[str] = ()) -> list[tuple[NameRule, str]]:
        """Every Azure name the program derives, with the rule it must meet (`services`: model service names)."""
        names = [
            (RESOURCE_GROUP, self.of("rg")),
            (AKS_CLUSTER, self.of("aks")),
            (AKS_DNS_PREFIX, self.base),
            (NODE_RESOURCE_GROUP, self.node_resource_group),
            (IDENTITY, self.of("id-aks")),
            (WORKSPACE, self.of("log")),
            (VIRTUAL_NETWORK, self.of("vnet")),
            (NETWORK_RESOURCE, self.of("rt")),
            (NETWORK_RESOURCE, self.of("pip-fw")),
            (NETWORK_RESOURCE, self.of("fwpol")),
            (FIREWALL, self.of("fw")),
            (REGISTRY, self.registry),
            (STORAGE_ACCOUNT, self.model_data_account),
        ]
        return names + [(IDENTITY, self.model_data_identity(service)) for service in services]

    def problems(self, services: Iterable[str] = ()) -> list[ConfigIssue]:
        """One issue per derived name Azure would refuse, keyed by the stack name that caused it."""
        derived = self.derived(services)
        longest = min(rule.maximum - (len(name) - len(self.stack)) for rule, name in derived if self.stack in name)
        allowed = f"allowed: a stack name of at most {longest} letters, digits and '-'"
        issues = []
        for rule, name in derived:
            if not (rule.minimum <= len(name) <= rule.maximum and rule.pattern.fullmatch(name)):
                issues.append(ConfigIssue(
                    STACK_KEY, self.stack,
                    f"makes the {rule.resource} name {name!r}, which Azure refuses ({rule.minimum}-{rule.maximum} "
                    f"characters: {rule.allowed}); {allowed}",
                ))
        return issues
