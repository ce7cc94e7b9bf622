"""The v1-service translations shared by local mode and the cluster: route, autoscaling, annotations, timeouts."""

import importlib.util
import json
import shutil
from pathlib import Path, PurePosixPath

import pytest

from contract.service import RegisteredModel, load_service
from contract.stack import PROJECT_ROOT, ModelEntry
from contract.v1_files import DeploymentConfig
from router import spec
from router.discovery import discover
from serving.translate import (
    autoscale_settings,
    discovery_annotations,
    endpoint_annotations,
    initial_replicas,
    model_dir_for,
    model_environment,
    models_subdir,
    registered_models_value,
    route_for,
    worker_timeout_seconds,
    workload_name,
)

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
V1_EXAMPLES = PROJECT_ROOT / "examples" / "v1"  # models built by `make` (examples/v1/train.py)
OVERRIDES = {
    "autoScaler": {"autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 6, "targetUtilization": 50},
    "maxConcurrentRequestsPerContainer": 3,
    "maxQueueWaitMs": 750,
    "scoringTimeoutMs": 4000,
    "namespace": "team-a",
}


def test_devtest_purpose_turns_autoscaling_off():
    service = load_service("examples/models/diabetes", "diabetes")
    assert service.deployment.autoscale_on
    assert autoscale_settings(service, "DevTest").enabled is False
    assert autoscale_settings(service, "FastProd").enabled is True
    assert autoscale_settings(service, "DevTest").fixed_replicas == service.deployment.initial_replicas


def test_the_route_carries_the_v1_settings():
    service = load_service(SAMPLE, "scorer", OVERRIDES)
    route = route_for(service, ("k" * 32,))
    assert (route.name, route.namespace, route.auth, route.keys) == ("scorer", "team-a", "key", ("k" * 32,))
    assert (route.scoring_timeout_ms, route.max_concurrent, route.max_queue_wait_ms) == (4000, 3, 750)
    assert route.cluster_name == "model-team-a-scorer"


def test_the_expected_service_time_reaches_the_route_in_both_modes():
    """Local mode serves `route_for`; the cluster's router reads the annotations: both carry the estimate."""
    service = load_service(SAMPLE, "scorer", {**OVERRIDES, "expectedServiceTimeMs": 250})
    route = route_for(service)
    assert route.expected_service_time_ms == 250
    assert route_for(load_service(SAMPLE, "scorer", OVERRIDES)).expected_service_time_ms is None
    manifest = {"metadata": {"name": "model-scorer", "namespace": "team-a", "labels": {"aks-inference/model-service": "true"},
                             "annotations": discovery_annotations(service, autoscale_settings(service, "FastProd"), keys_secret=None)}}
    [found] = discover([manifest], [], [])
    assert found.route == route and found.route.problems == ()


def test_a_token_services_authorization_reaches_its_route_and_its_annotations():
    rules = {"requiredRoles": ["Model.Score"], "allowedClientIds": ["00000000-0000-0000-0000-00000000000A"], "audience": "api://scorer"}
    service = load_service(SAMPLE, "scorer", {**OVERRIDES, "authEnabled": False, "tokenAuthEnabled": True, "tokenAuthorization": rules})
    route = route_for(service)
    assert route.auth == "token"
    assert route.token_authorization == spec.TokenAuthorization(("Model.Score",), ("00000000-0000-0000-0000-00000000000a",), "api://scorer")
    manifest = {"metadata": {"name": "model-scorer", "namespace": "team-a", "labels": {"aks-inference/model-service": "true"},
                             "annotations": discovery_annotations(service, autoscale_settings(service, "FastProd"), keys_secret=None)}}
    [found] = discover([manifest], [], [])
    assert found.route == route and found.route.problems == ()
    assert route_for(load_service(SAMPLE, "scorer", OVERRIDES)).token_authorization == spec.TokenAuthorization()


def test_autoscaling_and_initial_replicas_follow_the_deployment():
    service = load_service(SAMPLE, "scorer", OVERRIDES)
    settings = autoscale_settings(service, "FastProd", scale_down_window_seconds=30)
    assert (settings.min_replicas, settings.max_replicas, settings.target_utilization) == (2, 6, 0.5)
    assert (settings.max_concurrent, settings.scale_down_window_seconds) == (3, 30)
    assert initial_replicas(settings) == 2
    fixed = load_service(SAMPLE, "fixed", {"autoScaler": None, "numReplicas": 4})
    assert initial_replicas(autoscale_settings(fixed, "FastProd")) == 4


def test_annotations_round_trip_through_discovery():
    """What the deployer writes on the model Service is what the in-cluster router reads back."""
    service = load_service(SAMPLE, "scorer", OVERRIDES)
    autoscale = autoscale_settings(service, "FastProd")
    manifest = {
        "metadata": {
            "name": workload_name("scorer"),
            "namespace": "team-a",
            "labels": {"aks-inference/model-service": "true"},
            "annotations": discovery_annotations(service, autoscale, keys_secret=None),
        }
    }
    [found] = discover([manifest], [], [])
    assert found.route == route_for(service)
    assert found.autoscale == autoscale
    assert found.deployment == "model-scorer"


@pytest.mark.parametrize(("scoring_timeout_ms", "seconds"), [(60_000, 300), (300_000, 305), (600_500, 606)])
def test_worker_timeout_covers_the_scoring_timeout(scoring_timeout_ms, seconds):
    assert worker_timeout_seconds(scoring_timeout_ms) == seconds


def test_router_defaults_are_the_v1_defaults():
    """router/ ships alone and keeps its own defaults for a Service without annotations: they must equal v1's."""
    v1 = DeploymentConfig.model_validate({"computeType": "AKS"})
    assert spec.DEFAULT_SCORING_TIMEOUT_MS == v1.scoring_timeout_ms
    assert spec.DEFAULT_MAX_CONCURRENT == v1.max_concurrent_requests_per_container
    assert spec.DEFAULT_MAX_QUEUE_WAIT_MS == v1.max_queue_wait_ms


# ----------------------------------------------------------------------------- where models are


M = RegisteredModel
ROOT = PurePosixPath("/var/azureml-app/azureml-models")
FLAT = ROOT / "svc"


@pytest.mark.parametrize(
    ("registered", "expected"),
    [
        ((M("churn", 3),), ROOT / "churn" / "3"),  # one model: its version folder, as v1
        ((M("churn", 1), M("fraud", 2)), ROOT),  # several: the azureml-models root, as v1
        ((M("churn", 1), M("churn", 2)), ROOT),  # two versions of one name are two models
        ((), FLAT),  # flat: where the deployer put the folder
    ],
)
def test_azureml_model_dir_follows_v1s_rule(registered, expected):
    assert model_dir_for(registered, ROOT, FLAT) == expected


def test_models_go_where_v1_put_them():
    assert models_subdir("svc", (M("churn", 1),)) == PurePosixPath("azureml-models")
    assert models_subdir("svc", ()) == PurePosixPath("azureml-models/svc")


def v1_example(root: Path, name: str) -> Path:
    """A copy of examples/v1/<name> with its models built (examples/v1/train.py, as `make` runs it)."""
    spec = importlib.util.spec_from_file_location("v1_examples_train", V1_EXAMPLES / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    root = root / f"{name}-root"
    shutil.copytree(V1_EXAMPLES / name, root / name, ignore=shutil.ignore_patterns("model", "__pycache__"))
    train.main(["--root", str(root)])  # builds every example's models under root; we use one
    return root / name


def test_model_environment_of_the_examples(tmp_path):
    flat = load_service(SAMPLE, "diabetes")
    assert model_environment(flat) == {"AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/diabetes", "AKSINF_REGISTERED_MODELS": ""}
    one = load_service(v1_example(tmp_path, "mlopspython"), "mlops-diabetes")
    assert model_environment(one) == {
        "AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/diabetes_regression_model.pkl/3",
        "AKSINF_REGISTERED_MODELS": "diabetes_regression_model.pkl:3",
    }
    several = load_service(v1_example(tmp_path, "multi-model"), "multi-model")
    assert model_environment(several) == {
        "AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models",
        "AKSINF_REGISTERED_MODELS": "diabetes-lasso:1,diabetes-ridge:1,diabetes-ridge:2",
    }
    assert registered_models_value(several) == model_environment(several)["AKSINF_REGISTERED_MODELS"]


def _endpoint_entry(**extra):
    versions = [{"name": "scorer-v1", "isDefault": True, "versionType": "control"},
                {"name": "scorer-v2", "trafficPercentile": 30},
                {"name": "scorer-v3", "mirrorPercentile": 10}]
    return ModelEntry.model_validate({"name": "scorer", "path": "examples/models/diabetes", "versions": versions, **extra})


def test_an_endpoint_writes_its_auth_like_a_service_and_its_versions_in_order():
    rules = {"requiredRoles": ["Model.Score"], "audience": "api://scorer"}
    token = load_service(SAMPLE, "scorer", {"authEnabled": False, "tokenAuthEnabled": True, "tokenAuthorization": rules})
    written = endpoint_annotations(token, _endpoint_entry(), keys_secret=None)
    plain = discovery_annotations(token, autoscale_settings(token, "FastProd"), keys_secret=None)
    shared = ("aks-inference/service-name", "aks-inference/auth", "aks-inference/token-authorization")
    assert {k: written[k] for k in shared} == {k: plain[k] for k in shared}  # one writer of auth for both
    assert set(written) == {*shared, "aks-inference/versions"}  # no rollout, no limits: those are the versions'
    assert [(v["name"], v["trafficPercentile"], v["isDefault"], v["mirrorPercentile"]) for v in json.loads(written["aks-inference/versions"])] == [
        ("scorer-v1", None, True, 0), ("scorer-v2", 30, False, 0), ("scorer-v3", 0, False, 10)]
    keyed = endpoint_annotations(load_service(SAMPLE, "scorer"), _endpoint_entry(rollout={"steps": [30, 100]}), keys_secret="model-scorer-keys")
    assert keyed["aks-inference/keys-secret"] == "model-scorer-keys"
    assert json.loads(keyed["aks-inference/rollout"])["steps"] == [30, 100]


def test_a_version_names_its_endpoint_and_a_plain_service_does_not():
    service = load_service(SAMPLE, "scorer-v2", OVERRIDES)
    autoscale = autoscale_settings(service, "FastProd")
    assert "aks-inference/endpoint" not in discovery_annotations(service, autoscale, keys_secret=None)
    version = discovery_annotations(service, autoscale, keys_secret="model-scorer-keys", endpoint="scorer")
    assert version["aks-inference/endpoint"] == "scorer" and version["aks-inference/keys-secret"] == "model-scorer-keys"
