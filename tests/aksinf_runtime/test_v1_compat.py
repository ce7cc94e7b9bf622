"""The v1 compatibility tree (`aksinf_runtime/compat/azureml`): it answers `azureml.core.model` and
`azureml.monitoring` when no azureml-core is installed, and never shadows one that is.

Installing the real azureml-core (hundreds of MB of dependencies) is too heavy for the suite; a small
fake `azureml` package on PYTHONPATH stands in for it, in each of the shapes a real one can have.
Every case runs in a fresh interpreter, so sys.path and sys.modules are the ones a server worker has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aksinf_runtime import serve
from contract.stack import PROJECT_ROOT

PROBE = textwrap.dedent('''
    import importlib.util, json, sys
    from aksinf_runtime import serve
    import aksinf_runtime, aksinf_runtime.collector  # importing the runtime puts nothing on sys.path
    before = "importable" if importlib.util.find_spec("azureml") else "missing"  # finds, imports nothing
    serve.install_v1_compat()  # as a server worker does before it imports the entry script
    from azureml.core.model import Model
    from azureml.core import Model as CoreModel
    result = {"before": before, "model": Model.get_model_path("m"), "core_model_is_model": CoreModel is Model,
              "compat_last": sys.path[-1] == str(serve.COMPAT_DIR)}
    try:
        from azureml.monitoring import ModelDataCollector
        from aksinf_runtime.collector import ModelDataCollector as Ours
        result["collector"] = "ours" if ModelDataCollector is Ours else ModelDataCollector.__module__
    except ImportError as error:
        result["collector"] = f"ImportError: {error}"
    print(json.dumps(result))
''')

FAKE_MODEL = 'class Model:\n    @staticmethod\n    def get_model_path(model_name, version=None, _workspace=None):\n        return "real:" + model_name\n'


def probe(tmp_path: Path, pythonpath: list[Path]) -> dict:
    workdir = tmp_path / "cwd"
    (workdir / "azureml-models" / "m" / "1").mkdir(parents=True, exist_ok=True)
    (workdir / "azureml-models" / "m" / "1" / "m.pkl").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [*pythonpath, PROJECT_ROOT])}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def fake_azureml(root: Path, init: str | None) -> Path:
    """A real-looking azureml-core: azureml/core/model.py, with `azureml/__init__.py` = `init` (None: no file)."""
    (root / "azureml" / "core").mkdir(parents=True)
    if init is not None:
        (root / "azureml" / "__init__.py").write_text(init)
    (root / "azureml" / "core" / "__init__.py").write_text("from azureml.core.model import Model\n")
    (root / "azureml" / "core" / "model.py").write_text(FAKE_MODEL)
    return root


def test_without_azureml_core_the_compat_tree_answers(tmp_path):
    found = probe(tmp_path, [])
    assert found == {
        "before": "missing",  # the runtime alone adds nothing: only the serve entry point does
        "model": "azureml-models/m/1/m.pkl",
        "core_model_is_model": True,
        "compat_last": True,
        "collector": "ours",
    }


@pytest.mark.parametrize(
    "init",
    [
        "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n",  # what the azureml-core wheel ships
        None,  # a PEP 420 namespace portion
    ],
    ids=["pkgutil-namespace", "pep420-namespace"],
)
def test_a_real_azureml_core_wins_and_the_compat_tree_only_fills_gaps(tmp_path, init):
    found = probe(tmp_path, [fake_azureml(tmp_path / "site", init)])
    assert found["before"] == "importable"
    assert found["model"] == "real:m" and found["core_model_is_model"]  # the real azureml.core, whole
    assert found["collector"] == "ours"  # no azureml-monitoring installed: v1's collector comes from us


def test_a_real_azureml_package_that_owns_the_namespace_is_never_mixed_with_ours(tmp_path):
    found = probe(tmp_path, [fake_azureml(tmp_path / "site", "")])
    assert found["model"] == "real:m"
    assert found["collector"].startswith("ImportError")  # exactly what that environment had without us


def test_install_keeps_the_compat_tree_last():
    path = ["/app", "/site-packages", str(serve.COMPAT_DIR), "/appended-later"]
    serve.install_v1_compat(path)
    assert path == ["/app", "/site-packages", "/appended-later", str(serve.COMPAT_DIR)]
    serve.install_v1_compat(path)
    assert path.count(str(serve.COMPAT_DIR)) == 1 and path[-1] == str(serve.COMPAT_DIR)


def test_the_compat_tree_is_not_importable_from_the_project():
    assert not (serve.COMPAT_DIR / "__init__.py").exists()
    assert not (serve.COMPAT_DIR / "azureml" / "__init__.py").exists()  # namespace: real packages merge first
    assert str(serve.COMPAT_DIR) not in sys.path
