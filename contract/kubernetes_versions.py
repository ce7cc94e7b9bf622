"""Which AKS Kubernetes minor versions a cluster may run on a given day, and how long it may keep running them.

The table below is the AKS release calendar and its LTS table, from
https://learn.microsoft.com/azure/aks/supported-kubernetes-versions#aks-kubernetes-release-calendar
(LTS: https://learn.microsoft.com/azure/aks/long-term-support). Every function here is pure: the day is
always an argument (the program passes the day it runs; tests and the policy pack pass their own).

What it promises:
- `version_problem(version, on, tier, support_plan)` is None exactly when AKS lets a cluster be created on that
  version on day `on`: the minor is GA and before its end of life, or the cluster is on long-term support
  (Premium tier + `AKSLongTermSupport`) and before the LTS end of life.
- `days_until_end_of_support(...)` counts the days left under the support the cluster has (community or LTS).

Updating the table (when AKS announces a minor, or a date moves): add or edit the `MinorVersion` row with the
calendar's "AKS GA", "End of life" and "LTS End of life" columns. The calendar gives most dates as a month
only; such a date is written as the 1st of that month (AKS may remove a version any day of that month, so the
1st is the safe reading); a day the calendar names (e.g. "Aug 22, 2025") is written as given. Drop rows whose
LTS end of life is past. `az aks get-versions -l <region>` is the live truth for a region.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

COMMUNITY_SUPPORT = "KubernetesOfficial"
LONG_TERM_SUPPORT = "AKSLongTermSupport"
SUPPORT_PLANS = (COMMUNITY_SUPPORT, LONG_TERM_SUPPORT)
LTS_TIER = "Premium"


@dataclass(frozen=True)
class MinorVersion:
    minor: str
    ga: date
    end_of_life: date  # community support ends: no new clusters on it without LTS
    lts_end_of_life: date


# The AKS release calendar as of December 2026 (source and update rule: module docstring).
CALENDAR: tuple[MinorVersion, ...] = (
    MinorVersion("1.30", date(2024, 7, 1), date(2025, 8, 22), date(2026, 7, 1)),
    MinorVersion("1.31", date(2024, 11, 1), date(2025, 11, 1), date(2026, 11, 1)),
    MinorVersion("1.32", date(2025, 4, 1), date(2026, 3, 1), date(2027, 3, 1)),
    MinorVersion("1.33", date(2025, 6, 1), date(2026, 7, 1), date(2027, 7, 1)),
    MinorVersion("1.34", date(2025, 11, 1), date(2026, 11, 1), date(2027, 11, 1)),
    MinorVersion("1.35", date(2026, 3, 1), date(2027, 3, 1), date(2028, 3, 1)),
    MinorVersion("1.36", date(2026, 6, 1), date(2027, 6, 1), date(2028, 6, 1)),
    MinorVersion("1.37", date(2026, 10, 1), date(2027, 10, 1), date(2028, 10, 1)),
)
_BY_MINOR = {row.minor: row for row in CALENDAR}


def minor_of(version: str) -> str:
    """`1.36.2` -> `1.36` (AKS supports minors; patches come and go within them)."""
    return ".".join(version.split(".")[:2])


def _on_lts(tier: str, support_plan: str) -> bool:
    return support_plan == LONG_TERM_SUPPORT and tier == LTS_TIER


def supported_on(on: date) -> list[str]:
    """The minors under community support on day `on`, oldest first."""
    return [row.minor for row in CALENDAR if row.ga <= on < row.end_of_life]


def _allowed(on: date) -> str:
    return f"allowed on {on.isoformat()}: {', '.join(supported_on(on)) or 'none in the table (update contract/kubernetes_versions.py)'}"


def version_problem(version: str, on: date, tier: str, support_plan: str) -> str | None:
    """Why AKS would refuse a cluster on `version` on day `on` with this tier and support plan, or None."""
    row = _BY_MINOR.get(minor_of(version))
    if row is None:
        return f"{minor_of(version)} is not in the AKS release calendar (contract/kubernetes_versions.py); {_allowed(on)}"
    if on < row.ga:
        return f"{row.minor} is not generally available on AKS until {row.ga.isoformat()}; {_allowed(on)}"
    if on < row.end_of_life:
        return None
    if _on_lts(tier, support_plan):
        if on < row.lts_end_of_life:
            return None
        return f"{row.minor} left long-term support on {row.lts_end_of_life.isoformat()}; {_allowed(on)}"
    return (
        f"{row.minor} reached end of support on {row.end_of_life.isoformat()}; {_allowed(on)}; or keep {row.minor} on "
        f"long-term support until {row.lts_end_of_life.isoformat()} (cluster.skuTier {LTS_TIER} with "
        f"cluster.supportPlan {LONG_TERM_SUPPORT})"
    )


def end_of_support(version: str, tier: str, support_plan: str) -> date | None:
    """The first day the cluster's version is out of the support it has (LTS or community); None if unknown."""
    row = _BY_MINOR.get(minor_of(version))
    if row is None:
        return None
    return row.lts_end_of_life if _on_lts(tier, support_plan) else row.end_of_life


def days_until_end_of_support(version: str, on: date, tier: str, support_plan: str) -> int | None:
    """Days from `on` until the version leaves the support the cluster has (<= 0: already out); None if unknown."""
    end = end_of_support(version, tier, support_plan)
    return None if end is None else (end - on).days
