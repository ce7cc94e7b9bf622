"""Each service folder is read once per run: the loader hands the parsed services to everyone else.

Counts the one v1 document reader (`contract.service.read_document`) and the entry-script check
(`contract.v1_files._entry_script_problems`, which parses the script) during a whole program run
under mocks and during `aksinf serve --stack`'s loading.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

import contract.service
import contract.v1_files
from aksinf import serve
from contract.stack import PROJECT_ROOT
from tests.pulumi_harness import fresh_run, with_config

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
MODELS = [
    {"name": "diabetes", "path": "examples/models/diabetes"},
    {"name": "diabetes-two", "path": "examples/models/diabetes", "deployment": {"maxQueueWaitMs": 900}},
]


@pytest.fixture
def reads(monkeypatch) -> Counter:
    counts: Counter = Counter()
    read_document, check_entry_script = contract.service.read_document, contract.v1_files._entry_script_problems

    def counting_read(path: Path, key: str):
        counts[(key.split(".")[0], Path(path).name)] += 1
        return read_document(path, key)

    def counting_check(source: Path, entry_script: str):
        counts[("entry script", entry_script)] += 1
        return check_entry_script(source, entry_script)

    monkeypatch.setattr(contract.service, "read_document", counting_read)
    monkeypatch.setattr(contract.v1_files, "_entry_script_problems", counting_check)
    return counts


def test_a_program_run_reads_each_deploymentconfig_once(reads):
    run = fresh_run("dev", with_config("dev", models=MODELS))
    assert run.error is None
    assert reads == Counter({
        ("models[0]", "deploymentconfig.json"): 1,
        ("models[0]", "inferenceconfig.json"): 1,
        ("models[1]", "deploymentconfig.json"): 1,
        ("models[1]", "inferenceconfig.json"): 1,
        ("entry script", "score.py"): 2,  # one per service: both folders are the sample
    })


def test_serving_a_stack_locally_reads_each_folder_once(reads):
    services, _, _ = serve._services(argparse.Namespace(stack="dev", purpose=None))
    assert [s.name for s in services] == ["diabetes"]
    assert reads == Counter({
        ("models[0]", "deploymentconfig.json"): 1,
        ("models[0]", "inferenceconfig.json"): 1,
        ("entry script", "score.py"): 1,
    })
