"""The AKS version calendar as a pure function of (version, day, tier, support plan), and the stack check built on it."""

from __future__ import annotations

from datetime import date

import pytest

from contract.errors import ConfigError
from contract.kubernetes_versions import (
    CALENDAR,
    LONG_TERM_SUPPORT,
    days_until_end_of_support,
    supported_on,
    version_problem,
)
from contract.loading import load_stack
from contract.stack import ClusterConfig

TODAY = date(2026, 12, 4)
COMMUNITY = "KubernetesOfficial"


def test_the_calendar_is_ordered_and_each_row_is_consistent():
    minors = [row.minor for row in CALENDAR]
    assert minors == sorted(minors, key=lambda m: int(m.split(".")[1])) and len(set(minors)) == len(minors)
    for row in CALENDAR:
        assert row.ga < row.end_of_life < row.lts_end_of_life


def test_aks_supports_three_minors_on_the_evaluation_day():
    assert supported_on(TODAY) == ["1.35", "1.36", "1.37"]
    assert supported_on(date(2026, 10, 31)) == ["1.34", "1.35", "1.36", "1.37"]  # 1.37 GA, 1.34 not yet out


def test_the_default_version_is_supported_today():
    assert version_problem(ClusterConfig().kubernetes_version, TODAY, "Standard", COMMUNITY) is None


@pytest.mark.parametrize("version", ["1.35", "1.36.2", "1.37"])
def test_supported_minors_and_patches_pass(version):
    assert version_problem(version, TODAY, "Free", COMMUNITY) is None


def test_past_end_of_support_names_the_supported_list_and_the_lts_way_out():
    problem = version_problem("1.34", TODAY, "Standard", COMMUNITY)
    assert problem == (
        "1.34 reached end of support on 2026-11-01; allowed on 2026-12-04: 1.35, 1.36, 1.37; or keep 1.34 on long-term "
        "support until 2027-11-01 (cluster.skuTier Premium with cluster.supportPlan AKSLongTermSupport)"
    )
    # The day before end of support it still passes: the check follows the injected day.
    assert version_problem("1.34", date(2026, 10, 31), "Standard", COMMUNITY) is None


def test_long_term_support_needs_premium_and_ends_too():
    assert version_problem("1.34", TODAY, "Premium", LONG_TERM_SUPPORT) is None
    assert "reached end of support" in version_problem("1.34", TODAY, "Standard", LONG_TERM_SUPPORT)
    assert version_problem("1.31", TODAY, "Premium", LONG_TERM_SUPPORT) == (
        "1.31 left long-term support on 2026-11-01; allowed on 2026-12-04: 1.35, 1.36, 1.37")


def test_unknown_and_not_yet_ga_minors():
    assert version_problem("1.38", TODAY, "Standard", COMMUNITY).startswith("1.38 is not in the AKS release calendar")
    assert version_problem("1.37", date(2026, 9, 1), "Standard", COMMUNITY).startswith(
        "1.37 is not generally available on AKS until 2026-10-01")


def test_days_until_end_of_support_follow_the_plan():
    assert days_until_end_of_support("1.36", TODAY, "Standard", COMMUNITY) == (date(2027, 6, 1) - TODAY).days
    assert days_until_end_of_support("1.34", TODAY, "Premium", LONG_TERM_SUPPORT) == (date(2027, 11, 1) - TODAY).days
    assert days_until_end_of_support("1.34", TODAY, "Standard", COMMUNITY) < 0
    assert days_until_end_of_support("1.99", TODAY, "Standard", COMMUNITY) is None


def _issues(cluster: dict, on: date = TODAY) -> dict[str, tuple]:
    with pytest.raises(ConfigError) as excinfo:
        load_stack({"purpose": "DevTest", "cluster": {"disableLocalAccounts": False, **cluster}}, "westeurope", evaluated_on=on)
    return {issue.key: (issue.value, issue.problem) for issue in excinfo.value.issues}


def test_the_stack_check_runs_on_the_injected_day():
    found = _issues({"kubernetesVersion": "1.34"})
    assert found["cluster.kubernetesVersion"][0] == "1.34"
    assert "allowed on 2026-12-04: 1.35, 1.36, 1.37" in found["cluster.kubernetesVersion"][1]
    stack = load_stack({"purpose": "DevTest", "cluster": {"kubernetesVersion": "1.34", "disableLocalAccounts": False}},
                       "westeurope", evaluated_on=date(2026, 10, 1))
    assert stack.config.cluster.kubernetes_version == "1.34"


def test_lts_plan_needs_premium_and_rescues_an_old_minor():
    assert _issues({"supportPlan": LONG_TERM_SUPPORT}) == {
        "cluster.supportPlan": (LONG_TERM_SUPPORT, "needs cluster.skuTier Premium; cluster.skuTier is Standard")}
    stack = load_stack({"purpose": "DevTest", "cluster": {"kubernetesVersion": "1.34", "skuTier": "Premium",
                                                          "supportPlan": LONG_TERM_SUPPORT, "disableLocalAccounts": False}},
                       "westeurope", evaluated_on=TODAY)
    assert stack.config.cluster.support_plan == LONG_TERM_SUPPORT
    assert "'KubernetesOfficial' or 'AKSLongTermSupport'" in _issues({"supportPlan": "Extended"})["cluster.supportPlan"][1]
