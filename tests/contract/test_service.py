"""Service folders: loading, stack overrides, the model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.service import MAX_MODELS, ServiceConfigError, load_service
from contract.stack import PROJECT_ROOT
from contract.v1_files import deep_merge

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


ENTRY = "def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n"


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A minimal v1 service folder."""
    (tmp_path / "score.py").write_text(ENTRY)
    (tmp_path / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (tmp_path / "deploymentconfig.json").write_text(json.dumps({"computeType": "AKS", "numReplicas": 2, "scoringTimeoutMs": 3000}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\0")
    return tmp_path


def issues_of(excinfo) -> dict[str, str]:
    return {issue.key: issue.problem for issue in excinfo.value.issues}


def test_sample_service_loads_with_what_the_router_needs():
    svc = load_service(SAMPLE, "diabetes")
    assert svc.name == "diabetes"
    assert svc.entry_script == SAMPLE / "score.py"
    assert svc.source_dir == SAMPLE
    assert svc.model_dir == SAMPLE / "model"
    assert svc.conda_file == SAMPLE / "conda.yml"
    assert svc.namespace == "models"
    assert svc.deployment.auth_mode == "key" and svc.deployment.keys.primary_key is None and svc.deployment.keys.secondary_key is None
    assert svc.deployment.scoring_timeout_ms == 5000
    assert (svc.deployment.max_concurrent, svc.deployment.max_queue_wait_ms) == (1, 500)
    assert svc.deployment.autoscale_on and (svc.deployment.min_replicas, svc.deployment.max_replicas, svc.deployment.initial_replicas) == (1, 4, 1)
    assert svc.deployment.target_utilization == pytest.approx(0.7) and svc.deployment.refresh_seconds == 1


def test_stack_overrides_are_merged_over_the_file(service):
    svc = load_service(service, "svc-one", {"numReplicas": None, "autoScaler": {"autoscaleEnabled": True, "maxReplicas": 5}, "namespace": "team-a"})
    assert svc.deployment.autoscale_on and svc.deployment.max_replicas == 5
    assert svc.deployment.scoring_timeout_ms == 3000  # kept from the file
    assert svc.namespace == "team-a"


def test_deploymentconfig_is_optional(service):
    (service / "deploymentconfig.json").unlink()
    svc = load_service(service, "svc-one", {"maxQueueWaitMs": 900})
    assert svc.deployment.max_queue_wait_ms == 900 and svc.deployment.compute_type == "AKS"


def test_every_problem_is_reported_with_full_keys(service):
    (service / "inferenceconfig.json").write_text(json.dumps({"entryScript": "nope.py", "runtime": "java"}))
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "Bad_Name", {"autoScaler": {"minReplicas": 2}, "scoringTimeoutMs": 0}, key="models[3]")
    found = issues_of(excinfo)
    assert set(found) == {
        "models[3].name",
        "models[3].deployment.autoScaler.minReplicas",
        "models[3].deployment.scoringTimeoutMs",
        "models[3].inferenceConfig.runtime",
        "models[3].inferenceConfig.entryScript",
    }
    assert "3-32 characters" in found["models[3].name"]
    message = str(excinfo.value)
    assert message.startswith("5 problem(s) in model service 'Bad_Name'")
    assert "(got 0)" in message


@pytest.mark.parametrize("name", ["abc", "a-1", "x" * 32, "model-2"])
def test_service_names_accepted(service, name):
    assert load_service(service, name).name == name


@pytest.mark.parametrize("name", ["ab", "x" * 33, "1abc", "abc-", "ab_c", "Abc", "ab.c"])
def test_service_names_rejected(service, name):
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, name)
    assert "name" in issues_of(excinfo)


@pytest.mark.parametrize(
    "file, content, fragment",
    [
        ("deploymentconfig.json", "{not json", "is not valid JSON"),
        ("inferenceconfig.json", "[1, 2]", "must be a JSON object"),
        ("inferenceconfig.json", None, "file not found"),
    ],
)
def test_bad_v1_files(service, file, content, fragment):
    if content is None:
        (service / file).unlink()
    else:
        (service / file).write_text(content)
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one")
    assert any(fragment in problem for problem in issues_of(excinfo).values())


def test_missing_folder(tmp_path):
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(tmp_path / "absent", "svc-one", key="models[0]")
    assert "is not a directory" in issues_of(excinfo)["models[0].path"]


def test_missing_model_directory(service):
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one", model_dir="weights", key="models[0]")
    assert "model directory not found" in issues_of(excinfo)["models[0].modelDir"]


def test_up_to_1000_models_per_service(service):
    models = service / "model"
    for i in range(MAX_MODELS - 1):  # plus weights.bin
        (models / f"m{i}").mkdir()
    assert load_service(service, "svc-one").model_dir == models
    (models / "one-too-many").mkdir()
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one")
    assert f"at most {MAX_MODELS}" in issues_of(excinfo)["path"]


def test_deep_merge():
    base = {"a": {"b": 1, "c": 2}, "d": 3, "e": {"f": 1}}
    assert deep_merge(base, {"a": {"b": 9}, "d": None, "e": 4, "g": {"h": 1}}) == {"a": {"b": 9, "c": 2}, "e": 4, "g": {"h": 1}}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3, "e": {"f": 1}}  # not mutated
