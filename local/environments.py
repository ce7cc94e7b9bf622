"""Per-service local environments: each model server runs in a virtual environment built from its own
conda file, never in the platform's `.venv`.

One environment per distinct environment tag (`serving.images.EnvironmentSpec.tag`, the tag of the
environment image: base image, conda file, server version, runtime files and pins), so services with
the same environment share it, and a changed conda file or runtime builds a new one. Built with `uv`
into `<root>/<tag>/` (default root: `<run dir>/envs`), kept there: the next start with the same tag
costs a directory check (warm). What goes in, in the image's order (serving/Dockerfile.environment):

1. the interpreter: the conda file's `python=X.Y` when an installed Python matches it (`uv` never
   downloads one here: `--no-python-downloads`, system interpreters only); otherwise the platform's
   Python, with a warning naming the conda file line (the image would use the requested version);
2. the conda file's dependencies: its `pip:` section as written, and its conda packages mapped to
   PyPI names (`conda_requirement`: `scikit-learn=0.24` -> `scikit-learn==0.24.*`, `pytorch` ->
   `torch`); packages that exist only in conda (`cudatoolkit`, `libgcc-ng`, ...) are left out and
   reported per service with their conda file line;
3. `azureml-inference-server-http` at the platform's pin and the runtime's pins (`RUNTIME_PINS`),
   installed afterwards as the image's `pip install` does (they win a conflict, as there);
4. `aksinf_runtime`, copied exactly as into the image's build context (`EnvironmentSpec.write_context`)
   and put on `PYTHONPATH`, as the image's `ENV PYTHONPATH=/opt/aks-inference` does.

A build that fails (no wheel for a pin on this Python, an unknown package) raises `BuildError` with its
log file; the service is then reported failed, the others still serve. Builds go to a staging folder
renamed into place when complete, so an interrupted build is never taken for a ready environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serving.images import RUNTIME_PINS, SERVER_VERSION, environment_for

READY = "environment.json"  # written last: its presence means the environment is complete
SERVER = f"azureml-inference-server-http=={SERVER_VERSION}"

# Conda packages published on PyPI under another name (conda-forge feedstock name -> PyPI project).
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "msgpack-python": "msgpack",
    "pytables": "tables",
    "matplotlib-base": "matplotlib",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "python-graphviz": "graphviz",
    "pyqt": "PyQt5",
    "tensorflow-base": "tensorflow",
}
# Conda packages with no PyPI counterpart: system libraries, toolchains and conda's own metapackages.
# On PyPI these come with the wheels (CUDA runtimes as nvidia-* dependencies of torch/onnxruntime-gpu).
CONDA_ONLY = frozenset({
    "_libgcc_mutex", "_openmp_mutex", "blas", "bzip2", "ca-certificates", "cpuonly", "cudatoolkit", "cudnn",
    "cuda-toolkit", "cuda-version", "icu", "ld_impl_linux-64", "libblas", "libcblas", "libedit", "libffi",
    "libgcc", "libgcc-ng", "libgfortran-ng", "libgomp", "liblapack", "libopenblas", "libstdcxx-ng",
    "libuuid", "libzlib", "mkl-service", "nccl", "ncurses", "nomkl", "openblas", "openssl", "pytorch-cuda",
    "readline", "sqlite", "tk", "xz", "zlib",
})
# Always in a virtual environment (or not needed to serve): nothing to install, nothing to report.
PROVIDED = frozenset({"pip", "setuptools", "wheel"})

_SPEC = re.compile(r"(?:[^:\s]+::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<version>[^\[\s]*)\s*(?P<build>\S*)$")


@dataclass(frozen=True)
class Requirements:
    """What a conda file asks for, as PyPI requirements. `where` values are `<file>:<line>`."""

    python: str | None = None  # uv's version request ("3.11", ">=3.8"), None: not given
    python_where: str = ""
    pip: tuple[str, ...] = ()  # the pip section, verbatim
    conda: tuple[tuple[str, str, str], ...] = ()  # (PyPI requirement, conda entry, where)
    unmapped: tuple[tuple[str, str], ...] = ()  # (conda entry, where): conda only, left out

    @property
    def install(self) -> list[str]:
        return [requirement for requirement, _, _ in self.conda] + list(self.pip)

    def notes(self) -> list[str]:
        """One line per conda package left out, naming where it is written."""
        return [f"{where}: `{entry}` exists only as a conda package; left out locally (the image installs it)"
                for entry, where in self.unmapped]


def conda_requirement(entry: str) -> str | None:
    """The PyPI requirement for a conda match spec (`name`, `name=1.2`, `name==1.2.3`, `name>=1,<2`,
    `name 1.2.*`, `channel::name=1.2=build`), or None when the package exists only in conda.
    Conda's `=1.2` means "1.2 or any 1.2.x" (a prefix), which PEP 440 writes `==1.2.*`; build strings are
    dropped (PyPI has none). https://docs.conda.io/projects/conda-build/en/latest/resources/package-spec.html"""
    match = _SPEC.fullmatch(entry.strip())
    if match is None:
        raise ValueError(f"`{entry}` is not a conda package spec")
    name = match["name"].lower()
    if name in CONDA_ONLY:
        return None
    pypi = CONDA_TO_PYPI.get(name, name)
    return pypi + _pep440(match["version"])


def _conda_version(raw: str) -> str:
    """The version part of a conda spec without its build string: `=1.2=py311_0` -> `=1.2`."""
    if raw.startswith("=") and not raw.startswith("=="):
        return "=" + raw[1:].split("=")[0]
    return raw


def _pep440(raw: str) -> str:
    version = _conda_version(raw)
    if not version:
        return ""
    if version[0] in "<>!~" or version.startswith("=="):
        return version
    version = version.lstrip("=")
    return f"=={version}" if version.endswith("*") else f"=={version}.*"


def _python_request(entry: str) -> str:
    """uv's version request for conda's `python=3.8` / `python 3.8.*` / `python>=3.8`."""
    version = _conda_version(_SPEC.fullmatch(entry.strip())["version"])
    if version[:1] in "<>!~":
        return version
    return version.lstrip("=").removesuffix(".*").removesuffix("*")


def requirements_from_conda(text: str, name: str) -> Requirements:
    """The requirements of conda file `name` holding `text` (already validated by the contract: a
    mapping with a `dependencies` list). Pure."""
    root = yaml.compose(text)
    entries = _dependency_nodes(root)
    return _requirements([(node.value if isinstance(node, yaml.ScalarNode) else _pip_list(node),
                           f"{name}:{node.start_mark.line + 1}") for node in entries])


def requirements_from_environment(environment: dict[str, Any]) -> Requirements:
    """The requirements of an inference config's v1 `environment` object (its
    `python.condaDependencies`; `python.userManagedDependencies: true` means none)."""
    python = environment.get("python") or {}
    if python.get("userManagedDependencies"):
        return Requirements()
    dependencies = (python.get("condaDependencies") or {}).get("dependencies") or []
    key = "environment.python.condaDependencies.dependencies"
    return _requirements([(item if isinstance(item, str) else list((item or {}).get("pip") or []), f"{key}[{index}]")
                          for index, item in enumerate(dependencies)])


def _dependency_nodes(root: yaml.Node | None) -> list[yaml.Node]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "dependencies" and isinstance(value, yaml.SequenceNode):
            return list(value.value)
    return []


def _pip_list(node: yaml.Node) -> list[str]:
    """`- pip: [...]` as a list of requirement lines (anything else: none)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "pip" and isinstance(value, yaml.SequenceNode):
                return [str(item.value) for item in value.value if isinstance(item, yaml.ScalarNode)]
    return []


def _requirements(entries: list[tuple[str | list[str], str]]) -> Requirements:
    python = python_where = None
    pip: list[str] = []
    conda: list[tuple[str, str, str]] = []
    unmapped: list[tuple[str, str]] = []
    for entry, where in entries:
        if isinstance(entry, list):
            pip += entry
            continue
        name = _SPEC.fullmatch(entry.strip())
        if name is not None and name["name"].lower() == "python":
            python, python_where = _python_request(entry) or None, where
        elif name is not None and name["name"].lower() in PROVIDED:
            continue
        elif name is None:
            unmapped.append((entry, where))
        elif (requirement := conda_requirement(entry)) is None:
            unmapped.append((entry, where))
        else:
            conda.append((requirement, entry, where))
    return Requirements(python, python_where or "", tuple(pip), tuple(conda), tuple(unmapped))


def service_requirements(service) -> Requirements:
    """What `service`'s environment asks for (its conda file, or its inference config's `environment`)."""
    if service.inference.environment is not None:
        return requirements_from_environment(service.inference.environment)
    if service.conda_file is None:
        return Requirements()
    return requirements_from_conda(service.conda_file.read_text(encoding="utf-8"), service.inference.conda_file)


@dataclass(frozen=True)
class Environment:
    """A ready environment: run `python` with `PYTHONPATH=runtime_path`."""

    tag: str
    path: Path
    python_version: str
    notes: tuple[str, ...]  # what differs from the image (a Python fallback), for every service using it

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    @property
    def runtime_path(self) -> Path:
        return self.path / "image"


class BuildError(Exception):
    """An environment that could not be built; `log` holds uv's whole output."""

    def __init__(self, message: str, log: Path):
        super().__init__(message)
        self.log = log


def prepare(service, root: Path) -> Environment:
    """`service`'s environment under `root`, built unless one with its tag is complete there."""
    spec = environment_for(service)
    target = root / spec.tag
    if (target / READY).is_file():
        return load(target)
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"{spec.tag}.log"
    staging = root / f".{spec.tag}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with open(log, "w") as output:
            notes = _build(service_requirements(service), staging, output, log)
        spec.write_context(staging / "image")  # aksinf_runtime/ (+ the Dockerfile and conda file it came with)
        version = subprocess.run([staging / "venv" / "bin" / "python", "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        (staging / READY).write_text(json.dumps({"tag": spec.tag, "python": version, "notes": notes}, indent=2))
        try:
            staging.rename(target)
        except OSError:  # another process completed the same environment first
            if not (target / READY).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load(target)


def load(path: Path) -> Environment:
    """The complete environment at `path`; ValueError if there is none."""
    try:
        ready = json.loads((path / READY).read_text())
        return Environment(ready["tag"], path, ready["python"], tuple(ready["notes"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a complete environment ({error}); allowed: a folder built by `aksinf serve`") from None


def _build(requirements: Requirements, staging: Path, output, log: Path) -> list[str]:
    """uv venv + the conda file's packages + the server and runtime pins, into `staging`; notes on fallbacks."""
    notes = []
    venv = staging / "venv"
    create = ["venv", "--quiet", "--relocatable", "--no-python-downloads", "--python-preference", "only-system"]
    if requirements.python and _uv([*create, "--python", requirements.python, venv], output) != 0:
        notes.append(f"{requirements.python_where}: no Python {requirements.python} installed here; running on the "
                     f"platform's Python {sys.version.split()[0]} instead (the image uses {requirements.python})")
        shutil.rmtree(venv, ignore_errors=True)
    if not venv.exists() and _uv([*create, "--python", sys.executable, venv], output) != 0:
        raise BuildError(f"could not create a virtual environment; see {log}", log)
    python = venv / "bin" / "python"
    if requirements.install:
        listed = staging / "requirements.txt"
        listed.write_text("\n".join(requirements.install) + "\n")
        if _uv(["pip", "install", "--python", python, "-r", listed], output) != 0:
            raise BuildError(_install_failure(requirements, log), log)
    if _uv(["pip", "install", "--python", python, SERVER, *RUNTIME_PINS], output) != 0:
        raise BuildError(f"could not install {SERVER} {' '.join(RUNTIME_PINS)} beside the conda file's packages; see {log}", log)
    return notes


def _install_failure(requirements: Requirements, log: Path) -> str:
    """uv's own explanation (its last lines) plus where each conda package came from."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    reason = " ".join(line.strip() for line in lines[-3:])
    origin = "; ".join(f"{where}: `{entry}` -> {requirement}" for requirement, entry, where in requirements.conda)
    return f"could not install the conda file's packages: {reason}" + (f" (conda packages as PyPI: {origin})" if origin else "")


def _uv(arguments: list, output) -> int:
    """Run uv with `arguments`, its output into `output`; its exit code. Python downloads are off
    (only PyPI is reached), whatever the user's uv settings say."""
    from uv import find_uv_bin

    output.write(f"$ uv {' '.join(map(str, arguments))}\n")
    output.flush()
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    environment.pop("VIRTUAL_ENV", None)  # the platform's venv must never be the target
    return subprocess.run([find_uv_bin(), *map(str, arguments)], stdout=output, stderr=subprocess.STDOUT, env=environment).returncode
