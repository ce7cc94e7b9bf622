"""The stacks the policy cases edit: the shipped dev and prod, and prod with a general-purpose pool."""

from __future__ import annotations

import pytest

from tests.pulumi_harness import run_program, stack_config


def prod_with_cpu_pool() -> dict:
    """prod plus a general-purpose user pool (no accelerator, no taint): the program reserves the system pool."""
    config = stack_config("prod")
    config["aks-inference:pools"].append({"name": "cpu", "vmSize": "Standard_D4ds_v5", "minCount": 1, "maxCount": 3})
    return config


@pytest.fixture(scope="session")
def stacks(dev_run, prod_run) -> dict:
    with_cpu = run_program("prod", prod_with_cpu_pool())
    assert with_cpu.error is None, with_cpu.error
    return {"dev": dev_run.resources, "prod": prod_run.resources, "prod+cpu": with_cpu.resources}
