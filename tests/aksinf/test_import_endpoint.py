"""`aksinf import-endpoint`: a v1 AksEndpoint description in, an endpoint entry out that the stack loads.

fixtures/aks_endpoint.json has the shape azureml-core's `AksEndpoint.serialize()` writes
(`azureml/core/webservice/aks.py`: the endpoint's keys plus `versions`, each `AksWebservice.serialize()`,
whose base is `Webservice.serialize()`; nulls for unset settings, `versionType` "Control"/"Treatment").
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from aksinf import cli
from contract.loading import load_stack
from contract.stack import PROJECT_ROOT

FIXTURE = Path(__file__).parent / "fixtures" / "aks_endpoint.json"
SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
BASE = {"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ["00000000-0000-0000-0000-000000000001"]}}


def described() -> dict:
    return json.loads(FIXTURE.read_text())


def run(tmp_path: Path, capsys, description: dict, *extra: str) -> tuple[int, str, str]:
    source = tmp_path / "endpoint.json"
    source.write_text(json.dumps(description))
    code = cli.main(["import-endpoint", "--endpoint", str(source), "--path", str(SAMPLE), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_description_becomes_an_endpoint_entry_the_stack_loads(tmp_path, capsys):
    other = tmp_path / "v2"
    shutil.copytree(SAMPLE, other, ignore=shutil.ignore_patterns("__pycache__"))
    code, out, err = run(tmp_path, capsys, described(), "--version-path", f"diabetes-v2={other}")
    assert code == 0, err
    entry = yaml.safe_load(out)["aks-inference:models"][0]
    assert entry["name"] == "diabetes" and entry["path"] == "examples/models/diabetes"
    assert entry["deployment"] == {"authEnabled": True, "tokenAuthEnabled": False}
    v1, v2 = entry["versions"]
    assert v1["isDefault"] is True and v1["versionType"] == "control" and "trafficPercentile" not in v1
    assert v2["trafficPercentile"] == 20 and v2["versionType"] == "treatment" and v2["path"] == str(other)
    assert v2["deployment"]["scoringTimeoutMs"] == 30000 and v2["deployment"]["autoScaler"]["maxReplicas"] == 4
    assert v1["deployment"]["dataCollection"] == {"storageEnabled": True}  # eventHubEnabled has no equivalent
    assert "cpuLimit" not in v1["deployment"]["containerResourceRequirements"]  # nulls are the v1 defaults
    stack = load_stack({**BASE, "models": [entry]}, "westeurope")
    loaded_v1, loaded_v2 = stack.versions["diabetes"]
    assert loaded_v1.deployment.max_replicas == 8 and loaded_v2.deployment.max_replicas == 4
    assert loaded_v2.folder == other.resolve()
    assert "diabetes-ridge:2" in err and "keys" in err  # what the description cannot carry


def with_versions(**changes: dict) -> dict:
    description = described()
    for name, change in changes.items():
        description["versions"][name] = {**description["versions"][name], **change}
    return description


BAD = [
    ("fractional percentage", with_versions(**{"diabetes-v2": {"trafficPercentile": 12.5}}), (), "versions.diabetes-v2.trafficPercentile"),
    ("two defaults", with_versions(**{"diabetes-v2": {"isDefault": True}}), (), "versions.diabetes-v2.isDefault"),
    ("no default", with_versions(**{"diabetes-v1": {"isDefault": False}}), (), "isDefault: true"),
    ("unknown version type", with_versions(**{"diabetes-v2": {"versionType": "Canary"}}), (), "versions.diabetes-v2.versionType"),
    ("bad deployment value", with_versions(**{"diabetes-v2": {"scoringTimeoutMs": -5}}), (), "versions.diabetes-v2.deployment.scoringTimeoutMs"),
    ("unknown version path", described(), ("--version-path", f"diabetes-v9={SAMPLE}"), "names no version"),
    ("malformed version path", described(), ("--version-path", "diabetes-v2"), "VERSION=FOLDER"),
    ("not a description", {"versions": []}, (), "AksEndpoint.serialize() JSON"),
]


@pytest.mark.parametrize("case, description, extra, words", BAD, ids=[case for case, *_ in BAD])
def test_bad_descriptions_are_reported_without_a_traceback(tmp_path, capsys, case, description, extra, words):
    code, out, err = run(tmp_path, capsys, copy.deepcopy(description), *extra)
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    description = with_versions(**{"diabetes-v2": {"trafficPercentile": 12.5, "scoringTimeoutMs": -5}})
    code, _, err = run(tmp_path, capsys, description)
    assert code == 2 and "2 problem(s)" in err
