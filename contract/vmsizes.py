"""What the platform knows about Azure VM sizes: retirements, accelerators, MIG, vCPUs.

Kept as data plus small predicates so config validation and the policy pack
share one source of truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Retirement:
    retired_on: str
    successor: str


# Sizes Azure has retired (deallocated VMs break node pools). Successors are
# current sizes of the same class.
RETIRED_SIZES: dict[str, Retirement] = {
    # NCv3 (V100): retired 2025-09-30; NC24rs_v3 earlier, 2025-03-31.
    "Standard_NC6s_v3": Retirement("2025-09-30", "Standard_NC24ads_A100_v4"),
    "Standard_NC12s_v3": Retirement("2025-09-30", "Standard_NC24ads_A100_v4"),
    "Standard_NC24s_v3": Retirement("2025-09-30", "Standard_NC48ads_A100_v4"),
    "Standard_NC24rs_v3": Retirement("2025-03-31", "Standard_NC48ads_A100_v4"),
    # NC (K80), NCv2 (P100), ND (P40) and NV (M60) first generations: retired 2023.
    "Standard_NC6": Retirement("2023-08-31", "Standard_NC4as_T4_v3"),
    "Standard_NC12": Retirement("2023-08-31", "Standard_NC8as_T4_v3"),
    "Standard_NC24": Retirement("2023-08-31", "Standard_NC16as_T4_v3"),
    "Standard_NC24r": Retirement("2023-08-31", "Standard_NC16as_T4_v3"),
    "Standard_NC6s_v2": Retirement("2023-09-06", "Standard_NC24ads_A100_v4"),
    "Standard_NC12s_v2": Retirement("2023-09-06", "Standard_NC24ads_A100_v4"),
    "Standard_NC24s_v2": Retirement("2023-09-06", "Standard_NC48ads_A100_v4"),
    "Standard_NC24rs_v2": Retirement("2023-09-06", "Standard_NC48ads_A100_v4"),
    "Standard_ND6s": Retirement("2023-09-06", "Standard_NC24ads_A100_v4"),
    "Standard_ND12s": Retirement("2023-09-06", "Standard_NC24ads_A100_v4"),
    "Standard_ND24s": Retirement("2023-09-06", "Standard_NC48ads_A100_v4"),
    "Standard_ND24rs": Retirement("2023-09-06", "Standard_NC48ads_A100_v4"),
}

_GPU_FAMILIES = [
    re.compile(r"^Standard_NC(4|8|16|64)as_T4_v3$"),  # T4
    re.compile(r"^Standard_NC(24|48|96)ads_A100_v4$"),  # A100 PCIe
    re.compile(r"^Standard_ND96a(m)?sr(_A100)?_v4$"),  # A100 SXM
    re.compile(r"^Standard_NC(40|80)adis_H100_v5$"),  # H100 NVL
    re.compile(r"^Standard_ND96isr_H(100|200)_v5$"),  # H100 / H200 SXM
    re.compile(r"^Standard_NC(8|16|32)ads_A10_v4$"),  # A10
]
_MIG_FAMILIES = [
    re.compile(r"^Standard_NC(24|48|96)ads_A100_v4$"),
    re.compile(r"^Standard_ND96a(m)?sr(_A100)?_v4$"),
    re.compile(r"^Standard_NC(40|80)adis_H100_v5$"),
    re.compile(r"^Standard_ND96isr_H(100|200)_v5$"),
]
# PBS (Intel Arria 10, Azure ML hardware-accelerated models) and NP (Xilinx U250).
_FPGA_FAMILIES = [re.compile(r"^Standard_PB6s$"), re.compile(r"^Standard_NP(10|20|40)s$")]

_SIZE_SYNTAX = re.compile(r"^Standard_[A-Z]+[0-9]+[a-z]*(_[A-Za-z0-9]+)*$")
_VCPUS = re.compile(r"^Standard_[A-Z]+?([0-9]+)")

MIG_PROFILES = ("MIG1g", "MIG2g", "MIG3g", "MIG4g", "MIG7g")
CURRENT_GPU_EXAMPLES = "Standard_NC4as_T4_v3, Standard_NC24ads_A100_v4, Standard_NC40adis_H100_v5"


def is_well_formed(size: str) -> bool:
    return bool(_SIZE_SYNTAX.match(size))


def retirement(size: str) -> Retirement | None:
    return RETIRED_SIZES.get(size)


def is_gpu(size: str) -> bool:
    return any(p.match(size) for p in _GPU_FAMILIES) or (
        size in RETIRED_SIZES and size.startswith(("Standard_NC", "Standard_ND"))
    )


def supports_mig(size: str) -> bool:
    return any(p.match(size) for p in _MIG_FAMILIES)


def is_fpga(size: str) -> bool:
    return any(p.match(size) for p in _FPGA_FAMILIES)


def vcpus(size: str) -> int | None:
    """vCPU count read from the size name (the number after the family letters)."""
    match = _VCPUS.match(size)
    return int(match.group(1)) if match else None
