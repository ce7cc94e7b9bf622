"""The Kubernetes-version advisory on the real program's ManagedCluster: the AKS calendar on an injected day,
community support versus long-term support (Premium tier + AKSLongTermSupport)."""

from __future__ import annotations

from review.analyzer import analyze
from tests.policies.helpers import chain, edit, setter

CLUSTER = "azure-native:containerservice:ManagedCluster"
RULE = "aks-version-end-of-support"


def _messages(resources, today: str) -> list[str]:
    found = analyze(resources, {RULE: {"today": today}})
    assert not [d for d in found["mandatory"] if d.policy == RULE]  # advisory only
    # The analyzer reports the rule's description, then the violation on the last line.
    return [d.message.splitlines()[-1] for d in found["advisory"] if d.policy == RULE]


def test_shipped_version_warns_only_in_its_last_60_days(stacks):
    assert _messages(stacks["dev"], "2027-04-01") == []  # 61 days before 2027-06-01: not yet
    [message] = _messages(stacks["dev"], "2027-04-02")
    assert message == "Kubernetes 1.36 leaves community support on 2027-06-01, in 60 days; upgrade to one of 1.37"


def test_a_version_past_community_support_is_named_with_what_to_upgrade_to(stacks):
    old = edit(CLUSTER, setter("kubernetesVersion", "1.34"))(stacks["prod"])
    [message] = _messages(old, "2026-12-04")
    assert message == "Kubernetes 1.34 left community support on 2026-11-01; upgrade to one of 1.35, 1.36, 1.37"


def test_long_term_support_moves_the_deadline_a_year(stacks):
    lts = chain(edit(CLUSTER, setter("kubernetesVersion", "1.34")), edit(CLUSTER, setter("sku.tier", "Premium")),
                edit(CLUSTER, setter("supportPlan", "AKSLongTermSupport")))(stacks["prod"])
    assert _messages(lts, "2026-12-04") == []
    [message] = _messages(lts, "2027-10-01")
    assert "leaves long-term support on 2027-11-01, in 31 days" in message
    # The plan without the Premium tier is no long-term support.
    no_premium = edit(CLUSTER, setter("sku.tier", "Standard"))(lts)
    assert "left community support" in _messages(no_premium, "2026-12-04")[0]
