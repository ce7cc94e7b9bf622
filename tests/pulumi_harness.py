"""Test-side helpers over `review.offline` (the same runner `aksinf plan` uses)."""

from __future__ import annotations

import copy
from typing import Any

from contract.loading import read_stack_file
from review.offline import CapturedResource, OfflineRun, run_program

__all__ = ["CapturedResource", "OfflineRun", "run_program", "stack_config", "with_config"]


def stack_config(stack: str) -> dict[str, Any]:
    """A deep copy of a shipped stack's config, ready to be edited by a test."""
    return copy.deepcopy(read_stack_file(stack))


def with_config(stack: str, **changes: Any) -> dict[str, Any]:
    """The stack's config with top-level `aks-inference:` keys replaced (None removes a key).

    `azure_native_location` stands for `azure-native:location`.
    """
    config = stack_config(stack)
    for key, value in changes.items():
        full = "azure-native:location" if key == "azure_native_location" else f"aks-inference:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value
    return config
