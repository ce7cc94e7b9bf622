"""The layer contracts in pyproject.toml hold, and they really catch an upward import.

`make test` runs `lint-imports` on the tree before pytest; this test proves the contracts are not
vacuous: the same check on a copy of the packages with `import components` added to a router module
(what the router image could never ship) must fail and name the offending import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

from contract.stack import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _packages() -> list[str]:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["root_packages"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=environment, capture_output=True, text=True, timeout=120)


def test_an_upward_import_from_the_router_breaks_the_contracts(tmp_path):
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    for package in _packages():
        shutil.copytree(PROJECT_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert _lint(tmp_path).returncode == 0  # the copy is as clean as the tree

    with (tmp_path / "router" / "spec.py").open("a") as module:
        module.write("\nimport components  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode == 1
    assert "router.spec -> components" in result.stdout
    assert "Contracts: 2 kept, 2 broken." in result.stdout  # the layers and the router-ships-alone contracts
