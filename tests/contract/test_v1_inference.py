"""inferenceconfig.json: v1's InferenceConfig checks, both extraDockerfileSteps spellings, file resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.v1_files import parse_inference

ENTRY = "def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n"
CONDA = "name: svc\ndependencies:\n  - python=3.11\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "score.py").write_text(ENTRY)
    (tmp_path / "conda.yml").write_text(CONDA)
    (tmp_path / "steps.dockerfile").write_text("RUN echo hi\n")
    return tmp_path


def problems(folder: Path, document: dict) -> dict[str, str]:
    config, issues = parse_inference(document, folder, key="")
    assert config is None, "expected problems"
    return {issue.key: issue.problem for issue in issues}


def test_minimal_config(folder):
    config, issues = parse_inference({"entryScript": "score.py"}, folder, key="")
    assert issues == []
    assert config.entry_script == "score.py" and config.runtime is None and config.environment is None


def test_2019_document_with_every_key(folder):
    document = {
        "entryScript": "score.py",
        "runtime": "Python",
        "condaFile": "conda.yml",
        "extraDockerfileSteps": "steps.dockerfile",
        "sourceDirectory": ".",
        "enableGpu": True,
        "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
        "baseImageRegistry": {"address": "myacr.azurecr.io", "username": "u", "password": "p"},
        "cudaVersion": "10.0",
        "description": "all keys",
    }
    config, issues = parse_inference(document, folder, key="")
    assert issues == []
    assert config.runtime == "python"
    assert config.dockerfile_steps == "steps.dockerfile"
    assert config.base_image_registry.address == "myacr.azurecr.io"


@pytest.mark.parametrize("spelling", ["extraDockerfileSteps", "extraDockerFileSteps"])
def test_both_extra_dockerfile_steps_spellings(folder, spelling):
    config, issues = parse_inference({"entryScript": "score.py", spelling: "steps.dockerfile"}, folder, key="")
    assert issues == [] and config.dockerfile_steps == "steps.dockerfile"


def test_both_spellings_at_once_is_an_error(folder):
    found = problems(folder, {"entryScript": "score.py", "extraDockerfileSteps": "steps.dockerfile", "extraDockerFileSteps": "steps.dockerfile"})
    assert "same setting" in found["extraDockerFileSteps"]


def test_entry_script_is_required(folder):
    assert problems(folder, {})["entryScript"] == "is required"


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("score.txt", ENTRY, "ending in .py"),
        ("class.py", ENTRY, "not a keyword"),
        ("my-score.py", ENTRY, "Python identifier"),
        ("missing.py", None, "file not found"),
        ("broken.py", "def init(:\n", "does not parse as Python (line 1)"),
        ("half.py", "def init():\n    pass\n", "must define run()"),
        ("empty.py", "", "must define init() and run()"),
    ],
)
def test_entry_script_checks(folder, name, content, fragment):
    if content is not None:
        (folder / name).write_text(content)
    assert fragment in problems(folder, {"entryScript": name})["entryScript"]


def test_init_and_run_may_be_imported(folder):
    (folder / "impl.py").write_text(ENTRY)
    (folder / "entry.py").write_text("from impl import init, run\n")
    assert parse_inference({"entryScript": "entry.py"}, folder, key="")[1] == []


@pytest.mark.parametrize(
    "key, value",
    [
        ("runtime", "python"),
        ("condaFile", "conda.yml"),
        ("extraDockerfileSteps", "steps.dockerfile"),
        ("extraDockerFileSteps", "steps.dockerfile"),
        ("enableGpu", False),
        ("cudaVersion", "10.0"),
        ("baseImage", "ubuntu:22.04"),
    ],
)
def test_environment_excludes_image_settings(folder, key, value):
    found = problems(folder, {"entryScript": "score.py", "environment": {"name": "env"}, key: value})
    assert "cannot be combined with environment" in found[key]


def test_environment_with_description_and_source_directory_is_fine(folder):
    document = {"entryScript": "score.py", "sourceDirectory": ".", "description": "d", "environment": {"name": "env", "python": {}}}
    assert parse_inference(document, folder, key="")[1] == []


@pytest.mark.parametrize("runtime", ["python", "PYTHON"])
def test_runtime_python(folder, runtime):
    assert parse_inference({"entryScript": "score.py", "runtime": runtime}, folder, key="")[1] == []


def test_runtime_must_be_a_v1_value(folder):
    assert "'python' or 'spark-py'" in problems(folder, {"entryScript": "score.py", "runtime": "R"})["runtime"]


def test_spark_runtime_is_valid_v1_but_not_served(folder):
    assert "not supported" in problems(folder, {"entryScript": "score.py", "runtime": "spark-py"})["runtime"]


@pytest.mark.parametrize("version", ["9.0", "10.0", 10.0, "11.8", 11.8])
def test_cuda_versions(folder, version):
    """The versions with an Azure ML CUDA base image (contract.v1_files.CUDA_BASE_IMAGES), written as v1 did or bare."""
    config, issues = parse_inference({"entryScript": "score.py", "cudaVersion": version}, folder, key="")
    assert issues == [] and config.cuda_version == (f"{version:.1f}" if isinstance(version, float) else version)


@pytest.mark.parametrize("version", ["11.0", "10", 12.4, "9.1"])
def test_cuda_version_without_a_base_image_names_the_allowed_ones(folder, version):
    problem = problems(folder, {"entryScript": "score.py", "cudaVersion": version})["cudaVersion"]
    assert "has no Azure ML CUDA base image" in problem and "allowed: 9.0, 10.0, 10.1, 11.6, 11.8" in problem


def test_cuda_9_1_says_v1_took_it_but_no_image_exists(folder):
    assert "never published a CUDA 9.1 base image" in problems(folder, {"entryScript": "score.py", "cudaVersion": "9.1"})["cudaVersion"]


@pytest.mark.parametrize("image", ["ubuntu:22.04", "contoso.azurecr.io:5000/team/cuda:12.4-runtime",
                                   "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04@sha256:" + "0a" * 32])
def test_base_image_references(folder, image):
    assert parse_inference({"entryScript": "score.py", "baseImage": image}, folder, key="")[1] == []


@pytest.mark.parametrize("image", ["ubuntu@sha256:abc", "ubuntu@sha256:" + "A" * 64, "ubuntu 22.04", "mcr.microsoft.com/x:"])
def test_a_base_image_that_is_no_reference_is_refused(folder, image):
    assert "is not an image reference" in problems(folder, {"entryScript": "score.py", "baseImage": image})["baseImage"]


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "file not found"),
        ("name: [unclosed\n", "not valid YAML"),
        ("name: svc\n", "'dependencies' list"),
    ],
)
def test_conda_file_checks(folder, content, fragment):
    (folder / "conda.yml").unlink()
    if content is not None:
        (folder / "conda.yml").write_text(content)
    assert fragment in problems(folder, {"entryScript": "score.py", "condaFile": "conda.yml"})["condaFile"]


def test_paths_are_relative_to_the_source_directory(folder):
    src = folder / "src"
    src.mkdir()
    (src / "score.py").write_text(ENTRY)
    (src / "env.yml").write_text(CONDA)
    document = {"entryScript": "score.py", "sourceDirectory": "src", "condaFile": "env.yml"}
    assert parse_inference(document, folder, key="")[1] == []
    # the folder's own conda.yml is not looked at once sourceDirectory is set
    assert "file not found" in problems(folder, {**document, "condaFile": "conda.yml"})["condaFile"]


def test_missing_source_directory(folder):
    assert "is not a directory" in problems(folder, {"entryScript": "score.py", "sourceDirectory": "nope"})["sourceDirectory"]


def test_unknown_keys_suggest_and_schema_file_points_at_swagger(folder):
    found = problems(folder, {"entryScript": "score.py", "condafile": "conda.yml", "schemaFile": "schema.json"})
    assert "did you mean 'condaFile'?" in found["condafile"]
    assert "swagger.json" in found["schemaFile"]
