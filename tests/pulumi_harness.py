"""Test-side helpers over `review.offline` (the same runner `aksinf plan` uses)."""

from __future__ import annotations

import copy
import json
from typing import Any

from contract.loading import read_stack_file
from review.offline import CapturedResource, OfflineRun
from review.offline import run_program as fresh_run

__all__ = ["CapturedResource", "OfflineRun", "fresh_run", "run_program", "stack_config", "with_config"]

_RUNS: dict[str, OfflineRun] = {}


def run_program(stack: str = "dev", config: dict[str, Any] | None = None, **options: Any) -> OfflineRun:
    """`review.offline.run_program` (`fresh_run`), run once per test process for the same stack, config and
    options; each caller gets its own deep copy, so no test sees another's edits. A program run costs seconds
    of CPU and the graph, policy and review suites ask for the same configurations many times.

    The program also reads files (model folders, its own sources), which this key does not cover: a test that
    edits them between two runs uses another folder (so another config) or calls `fresh_run`, as does a test of
    the program's own determinism."""
    key = json.dumps([stack, config, sorted(options.items())], sort_keys=True, default=str)
    if key not in _RUNS:
        _RUNS[key] = fresh_run(stack, config, **options)
    return copy.deepcopy(_RUNS[key])


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
