"""Pulumi fixtures: each shipped stack run once per session under fresh mocks (runs are read-only)."""

import pytest

from tests.pulumi_harness import run_program


@pytest.fixture(scope="session")
def dev_run():
    run = run_program("dev")
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="session")
def prod_run():
    run = run_program("prod")
    assert run.error is None, run.error
    return run
