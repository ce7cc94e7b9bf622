"""The local model-server launcher's argv follows the service's deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.service import load_service
from local import model_server as local_server
from tests.fixtures_services import ENTRY


def test_server_command_matches_the_deployment(service):
    svc = load_service(service, "svc-one")
    argv = local_server.command_for(svc, 18001)
    assert argv == local_server.command(
        service / "score.py", service / "model", 18001, workers=1, scoring_timeout_ms=3000, source_dir=service, service_name=svc.name
    )


# ----------------------------------------------------------------------------- models laid out as in the image


def _v1_models(root: Path, *registered: str) -> Path:
    """model/<name>/<version>/<name>.pkl for every 'name:version'."""
    models = root / "model"
    for item in registered:
        name, version = item.split(":")
        (models / name / version).mkdir(parents=True)
        (models / name / version / f"{name}.pkl").write_bytes(b"\0")
    return models


def _args(entry: Path, models: Path, *extra: str):
    return local_server._parser().parse_args(["--entry-script", str(entry), "--model-dir", str(models), "--port", "5001", *extra])


def test_replicas_keep_the_sync_worker_while_the_scoring_timeout_needs_the_main_thread(service, tmp_path):
    """Why replicas close every connection (module docstring): a keep-alive worker (gthread) runs run() in a
    pool thread, where the installed server cannot enforce scoringTimeoutMs. Fails if that changes: revisit."""
    import threading

    from azureml_inference_server_http.server.utils import timeout_supported

    off_main: list[bool] = []
    thread = threading.Thread(target=lambda: off_main.append(timeout_supported()))
    thread.start()
    thread.join()
    assert timeout_supported() and off_main == [False]
    env = local_server.server_environment(_args(service / "score.py", service / "model"), tmp_path / "run")
    assert not {"-k", "--worker-class", "--threads"} & set(env["GUNICORN_CMD_ARGS"].split())


def test_run_dir_reaches_the_command(service, tmp_path):
    svc = load_service(service, "svc-one")
    argv = local_server.command_for(svc, 18001, run_dir=tmp_path / "run")
    assert argv[-2:] == ["--run-dir", str(tmp_path / "run")]


def test_a_v1_layout_appears_as_azureml_models(tmp_path):
    models = _v1_models(tmp_path, "churn:1", "churn:2")
    run = tmp_path / "run"
    run.mkdir()
    link = local_server.lay_out_models(run, models, "svc", ((("churn", 1)), ("churn", 2)))
    assert link == run / "azureml-models" and link.is_symlink() and link.resolve() == models.resolve()
    assert (run / "azureml-models" / "churn" / "2" / "churn.pkl").is_file()


def test_a_flat_folder_appears_as_azureml_models_service(service, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    link = local_server.lay_out_models(run, service / "model", "svc-one", ())
    assert link == run / "azureml-models" / "svc-one" and (link / "weights.bin").is_file()
    again = local_server.lay_out_models(run, service / "model", "svc-one", ())  # a restart replaces it
    assert again == link


def test_a_run_dir_with_real_files_is_never_cleared(service, tmp_path):
    run = tmp_path / "run"
    (run / "azureml-models").mkdir(parents=True)
    (run / "azureml-models" / "precious.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="holds files"):
        local_server.lay_out_models(run, service / "model", "svc-one", ())
    assert (run / "azureml-models" / "precious.bin").exists()


def test_one_registered_model_is_azureml_model_dir(tmp_path):
    models = _v1_models(tmp_path, "churn:3")
    (tmp_path / "score.py").write_text(ENTRY)
    env = local_server.server_environment(_args(tmp_path / "score.py", models), tmp_path / "run")
    assert env["AZUREML_MODEL_DIR"] == str(tmp_path.resolve() / "run" / "azureml-models" / "churn" / "3")
    assert env["AZUREML_MODEL_DIR"].split("/")[-2] == "churn"  # MLOpsPython's idiom
    assert env["AKSINF_REGISTERED_MODELS"] == "churn:3"
    assert env["GUNICORN_CMD_ARGS"] == f"--no-control-socket --chdir {tmp_path.resolve() / 'run'}"


def test_several_registered_models_are_the_azureml_models_root(tmp_path):
    models = _v1_models(tmp_path, "churn:1", "churn:2", "fraud:1")
    (tmp_path / "score.py").write_text(ENTRY)
    env = local_server.server_environment(_args(tmp_path / "score.py", models), tmp_path / "run")
    assert env["AZUREML_MODEL_DIR"] == str(tmp_path.resolve() / "run" / "azureml-models")
    assert env["AKSINF_REGISTERED_MODELS"] == "churn:1,churn:2,fraud:1"


def test_a_flat_folder_keeps_azureml_model_dir_as_before(service, tmp_path):
    env = local_server.server_environment(_args(service / "score.py", service / "model"), tmp_path / "run")
    assert env["AZUREML_MODEL_DIR"] == str((service / "model").resolve())
    assert "AKSINF_REGISTERED_MODELS" not in env


def test_a_malformed_v1_layout_is_refused_before_start(tmp_path, capsys):
    models = _v1_models(tmp_path, "churn:1")
    (models / "churn" / "latest").mkdir()
    (tmp_path / "score.py").write_text(ENTRY)
    with pytest.raises(SystemExit) as excinfo:
        local_server.main(["--entry-script", str(tmp_path / "score.py"), "--model-dir", str(models), "--port", "5001", "--run-dir", str(tmp_path / "run")])
    assert excinfo.value.code == 2
    assert "churn/latest: is not an integer version folder" in capsys.readouterr().err
