"""Service folders: loading, stack overrides, the model directory and its layout, YAML v1 files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from contract.service import (
    MAX_MODELS,
    RegisteredModel,
    ServiceConfigError,
    load_service,
    model_layout,
    read_document,
)
from contract.stack import PROJECT_ROOT
from contract.v1_files import deep_merge

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


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


# ----------------------------------------------------------------------------- model layouts


def _models(service: Path, files: dict[str, bytes]) -> Path:
    """Replace the model folder with exactly `files` (relative path -> bytes; a trailing / is an empty folder)."""
    models = service / "model"
    shutil.rmtree(models)
    models.mkdir()
    for rel, data in files.items():
        path = models / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return models


def test_a_flat_model_folder_has_no_registered_models(service):
    svc = load_service(service, "svc-one")
    assert svc.registered_models == () and svc.model_layout == "flat"


def test_v1_layout_lists_every_registered_model_and_version(service):
    _models(service, {"churn/1/model.pkl": b"1", "churn/2/model.pkl": b"2", "fraud/7/fraud/weights.bin": b"w", ".gitkeep": b""})
    svc = load_service(service, "svc-one")
    assert svc.model_layout == "v1"
    assert svc.registered_models == (("churn", 1), ("churn", 2), ("fraud", 7))
    assert svc.registered_models[0] == RegisteredModel("churn", 1) and svc.registered_models[0].version == 1


@pytest.mark.parametrize(
    "files",
    [
        {"weights.bin": b"x", "tokenizer/1/vocab.txt": b"v"},  # a top-level file: one unnamed model
        {"encoder/weights.bin": b"x", "decoder/weights.bin": b"y"},  # folders without version folders
        {"bert/v1/weights.bin": b"x"},  # no integer-named folder anywhere
        {"checkpoints/1": b"not a folder"},  # an integer-named file is no version folder
    ],
)
def test_layouts_that_are_not_v1_stay_flat(service, files):
    _models(service, files)
    assert load_service(service, "svc-one").registered_models == ()


@pytest.mark.parametrize(
    ("files", "where", "fragment"),
    [
        ({"churn/1/a.pkl": b"a", "churn/latest/a.pkl": b"a"}, "churn/latest", "is not an integer version folder"),
        ({"churn/1/a.pkl": b"a", "churn/notes.txt": b"n"}, "churn/notes.txt", "is not an integer version folder"),
        ({"churn/007/a.pkl": b"a"}, "churn/007", "without leading zeros"),
        ({"churn/1/a.pkl": b"a", "churn/1/b.pkl": b"b"}, "churn/1", "can contain only 1 file or folder. Found ['a.pkl', 'b.pkl']"),
        ({"churn/1/": b""}, "churn/1", "can contain only 1 file or folder. Found []"),
        ({"churn/1/a.pkl": b"a", "fraud/": b""}, "fraud", "holds no version folder"),
        ({"churn/1/a.pkl": b"a", "bad name/1/b.pkl": b"b"}, "bad name", "is not a registered model name"),
    ],
)
def test_a_malformed_v1_layout_is_a_keyed_error(service, files, where, fragment):
    _models(service, files)
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one", key="models[2]")
    assert [issue.key for issue in excinfo.value.issues] == ["models[2].path"]
    issue = excinfo.value.issues[0]
    assert issue.value.endswith(f"model/{where}") and fragment in issue.problem


def test_v1_layout_problems_are_keyed_on_model_dir_when_it_is_set(service):
    (service / "weights").mkdir()
    (service / "weights" / "churn" / "1" / "a").mkdir(parents=True)
    (service / "weights" / "churn" / "1" / "b").mkdir()
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one", model_dir="weights", key="models[0]")
    assert "can contain only 1 file or folder" in issues_of(excinfo)["models[0].modelDir"]


def test_the_1000_model_limit_counts_registered_versions(service):
    _models(service, {f"m{i}/1/w.bin": b"" for i in range(MAX_MODELS)})
    assert len(load_service(service, "svc-one").registered_models) == MAX_MODELS
    (service / "model" / "m0" / "2").mkdir()
    (service / "model" / "m0" / "2" / "w.bin").write_bytes(b"")
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one")
    assert f"holds {MAX_MODELS + 1} registered model versions" in issues_of(excinfo)["path"]


def test_model_layout_is_usable_on_its_own(tmp_path):
    (tmp_path / "churn" / "3").mkdir(parents=True)
    (tmp_path / "churn" / "3" / "m.pkl").write_bytes(b"")
    assert model_layout(tmp_path, "--model-dir") == (((("churn", 3)),), [])


# ----------------------------------------------------------------------------- YAML v1 files


def _as_yaml(service: Path, name: str, suffix: str) -> Path:
    json_file = service / f"{name}.json"
    yaml_file = service / f"{name}{suffix}"
    yaml_file.write_text(yaml.safe_dump(json.loads(json_file.read_text())))
    json_file.unlink()
    return yaml_file


@pytest.mark.parametrize("suffix", [".yml", ".yaml"])
def test_yaml_v1_files_load_like_json(service, suffix):
    from_json = load_service(service, "svc-one")
    _as_yaml(service, "inferenceconfig", suffix)
    _as_yaml(service, "deploymentconfig", suffix)
    from_yaml = load_service(service, "svc-one")
    assert from_yaml.deployment == from_json.deployment and from_yaml.inference == from_json.inference


def test_yaml_problems_are_keyed_like_json_and_name_the_file(service):
    (service / "deploymentconfig.json").unlink()
    (service / "deploymentconfig.yml").write_text("computeType: AKS\nnumReplicas: '2'\nautoScaler:\n  maxReplicas: 3\n")
    (service / "inferenceconfig.json").unlink()
    (service / "inferenceconfig.yaml").write_text("entryScript: score.py\nruntime: java\n")
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one", key="models[1]")
    found = issues_of(excinfo)
    assert set(found) == {"models[1].deployment.numReplicas", "models[1].deployment.autoScaler.maxReplicas", "models[1].inferenceConfig.runtime"}
    assert found["models[1].deployment.numReplicas"].endswith("deploymentconfig.yml]")  # [set in .../deploymentconfig.yml]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("computeType: [AKS\n", "is not valid YAML"),
        ("a: &x [1, 2]\nb: *x\n", "aliases (*name) are not allowed"),
        ("- computeType\n", "must be a JSON object"),
        ("computeType: AKS\ndescription: 2024-13-45\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_files(service, text, fragment):
    (service / "deploymentconfig.json").unlink()
    (service / "deploymentconfig.yml").write_text(text)
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one")
    problems = issues_of(excinfo)
    key = "path" if fragment != "must be a JSON object" else "deployment"
    assert fragment in problems[key]
    if key == "path":
        assert "deploymentconfig.yml" in str(excinfo.value)  # the file is named


def test_two_inference_configs_are_ambiguous(service):
    (service / "inferenceconfig.yml").write_text("entryScript: score.py\n")
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(service, "svc-one")
    assert "holds inferenceconfig.json, inferenceconfig.yml" in issues_of(excinfo)["path"]


def test_read_document_reads_yaml_by_suffix(tmp_path):
    (tmp_path / "a.yaml").write_text("entryScript: score.py\ncudaVersion: 10.0\n")
    (tmp_path / "a.json").write_text("entryScript: score.py\n")
    assert read_document(tmp_path / "a.yaml", "k") == ({"entryScript": "score.py", "cudaVersion": 10.0}, [])
    data, issues = read_document(tmp_path / "a.json", "k")
    assert data is None and "is not valid JSON" in issues[0].problem
