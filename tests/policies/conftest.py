"""The stacks the policy cases edit: the shipped dev, prod and gpu, prod with a general-purpose pool, and
prod serving a model over plain HTTP by choice (`tls.allowInsecure: true`), and dev serving a versioned endpoint."""

from __future__ import annotations

import pytest

from tests.pulumi_harness import run_program, stack_config, with_config

DIABETES = {"name": "diabetes", "path": "examples/models/diabetes"}
# A versioned endpoint: the control is the default, the treatment takes 10 % (contract/endpoints.py).
ENDPOINT = {**DIABETES, "versions": [{"name": "diabetes-v1", "isDefault": True, "versionType": "control"},
                                     {"name": "diabetes-v2", "trafficPercentile": 10}]}


def prod_with_cpu_pool() -> dict:
    """prod plus a general-purpose user pool (no accelerator, no taint): the program reserves the system pool."""
    config = stack_config("prod")
    config["aks-inference:pools"].append({"name": "cpu", "vmSize": "Standard_D4ds_v5", "minCount": 1, "maxCount": 3})
    return config


def _run(stack: str, config: dict | None = None):
    run = run_program(stack, config)
    assert run.error is None, run.error
    return run.resources


@pytest.fixture(scope="session")
def stacks(dev_run, prod_run) -> dict:
    return {
        "dev": dev_run.resources,
        "prod": prod_run.resources,
        "prod+cpu": _run("prod", prod_with_cpu_pool()),
        "gpu": _run("gpu"),
        "prod+insecure": _run("prod", with_config("prod", models=[DIABETES], tls={"allowInsecure": True})),
        "dev+endpoint": _run("dev", with_config("dev", models=[ENDPOINT])),
    }
