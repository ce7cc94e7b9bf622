"""v1's Model.get_model_path without azureml-core, and the registered models a replica serves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aksinf_runtime import ModelDataCollector, environment
from aksinf_runtime.registered_models import (
    MODELS_DIR,
    AzureMLException,
    ModelNotFoundException,
    WebserviceException,
    decode,
    encode,
    get_model_path,
    registered_version,
)


def put(root: Path, rel: str, data: bytes = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def app_root(tmp_path, monkeypatch):
    """A working directory laid out as a v1 container's /var/azureml-app."""
    put(tmp_path, f"{MODELS_DIR}/churn/1/churn.pkl")
    put(tmp_path, f"{MODELS_DIR}/churn/2/churn.pkl")
    put(tmp_path, f"{MODELS_DIR}/churn/10/churn.pkl")
    put(tmp_path, f"{MODELS_DIR}/bert/3/bert/config.json")
    put(tmp_path, f"{MODELS_DIR}/bert/3/bert/weights.bin")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_latest_integer_version_by_default(app_root):
    assert get_model_path("churn") == os.path.join(MODELS_DIR, "churn", "10", "churn.pkl")  # 10 > 2, not "2" > "10"


def test_a_given_version(app_root):
    assert get_model_path("churn", version=2) == os.path.join(MODELS_DIR, "churn", "2", "churn.pkl")
    assert get_model_path(model_name="churn", version=1, _workspace=object()) == "azureml-models/churn/1/churn.pkl"


def test_a_model_registered_as_a_folder_is_that_folder(app_root):
    path = get_model_path("bert")
    assert path == "azureml-models/bert/3/bert" and os.path.isdir(path)


def test_relative_paths_resolve_against_the_working_directory(app_root):
    assert Path(get_model_path("churn")).resolve() == app_root / MODELS_DIR / "churn" / "10" / "churn.pkl"


def test_version_must_be_an_int(app_root):
    with pytest.raises(WebserviceException, match="^version should be an int$"):
        get_model_path("churn", version="2")


def test_a_version_folder_holds_one_entry(app_root):
    put(app_root, f"{MODELS_DIR}/churn/2/extra.txt")
    with pytest.raises(WebserviceException) as excinfo:
        get_model_path("churn", version=2)
    found = ("['churn.pkl', 'extra.txt']", "['extra.txt', 'churn.pkl']")  # os.listdir order, as v1 printed it
    assert excinfo.value.message in {f"Dir azureml-models/churn/2 can contain only 1 file or folder. Found {f}" for f in found}


def test_falls_back_to_the_working_directory(app_root):
    put(app_root, "local-model.pkl")
    assert get_model_path("local-model.pkl") == "local-model.pkl"
    put(app_root, "churn-v9/model.pkl")
    assert get_model_path("churn-v9") == "churn-v9"
    assert get_model_path("local-model.pkl", version=4) == "local-model.pkl"  # no azureml-models/<name>: ./name


def test_a_missing_version_falls_back_then_fails(app_root):
    with pytest.raises(WebserviceException) as excinfo:
        get_model_path("churn", version=7)
    assert excinfo.value.message == (
        f"Model churn not found in cache at azureml-models or in current working directory {app_root}. "
        "For more info, set logging level to DEBUG."
    )


def test_an_unknown_model_is_model_not_found(app_root):
    with pytest.raises(ModelNotFoundException) as excinfo:
        get_model_path("absent")
    assert str(excinfo.value) == (
        f"Model absent not found in cache at azureml-models or in current working directory {app_root}. "
        "For more info, set logging level to DEBUG."
    )
    assert isinstance(excinfo.value, AzureMLException) and not isinstance(excinfo.value, WebserviceException)


def test_a_non_integer_version_folder_fails_as_in_v1(app_root):
    (app_root / MODELS_DIR / "churn" / "latest").mkdir()
    with pytest.raises(ValueError):
        get_model_path("churn")
    assert get_model_path("churn", version=2).endswith("churn.pkl")  # a given version never lists the folder


def test_encode_decode_round_trip():
    models = (("fraud", 1), ("churn", 2), ("churn", 10), ("name.with:colon.pkl", 3))
    assert encode(models) == "churn:2,churn:10,fraud:1,name.with:colon.pkl:3"
    assert decode(encode(models)) == tuple(sorted(models))
    assert decode("") == () and decode("churn:x, :3,ok:4") == (("ok", 4),)


def test_registered_version_is_the_highest_deployed():
    environ = {environment.REGISTERED_MODELS: "churn:2,churn:10,fraud:1"}
    assert registered_version("churn", environ) == "10"
    assert registered_version("fraud", environ) == "1"
    assert registered_version("other", environ) is None
    assert registered_version("churn", {}) is None


def test_the_collector_takes_the_deployed_version(monkeypatch):
    monkeypatch.setenv(environment.REGISTERED_MODELS, "diabetes-ridge:4,other:1")
    assert ModelDataCollector("diabetes-ridge", designation="inputs").model_version == "4"
    assert ModelDataCollector("diabetes-ridge", designation="inputs", model_version="default").model_version == "4"
    assert ModelDataCollector("diabetes-ridge", designation="inputs", model_version="7").model_version == "7"  # explicit wins
    assert ModelDataCollector("unregistered", designation="inputs").model_version == "default"
    monkeypatch.delenv(environment.REGISTERED_MODELS)
    assert ModelDataCollector("diabetes-ridge", designation="inputs").model_version == "default"  # flat: as before
