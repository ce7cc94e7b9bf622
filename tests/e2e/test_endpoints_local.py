"""Versioned endpoints end to end on 127.0.0.1: real Envoy, real azureml-inference-server-http replicas per
version, the real control plane with its canary loop and a file state store, all through LocalPlatform.

One platform for the module (start-up is the cost): the endpoint `scorer` has a control (`scorer-a`, the
sample's v1 model, the default), a 10 % treatment (`scorer-b`, the v2 model) under a rollout, and a shadow
(`scorer-shadow`, the v1 model, every request mirrored). Each version runs the same test entry script, which
predicts with its folder's model, collects inputs and predictions, and does what the request asks of its
version by name (`sleep` seconds, `fail`), so one request can make the shadow sleep or fail while the
caller's version answers. The canary test stops the control loop and ticks it by hand: it runs last.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import joblib
import pytest

from aksinf import compare
from contract.loading import load_stack
from contract.stack import PROJECT_ROOT
from local.net import free_port
from local.platform import LocalPlatform, local_models
from router.metrics import envoy_load
from router.spec import VERSION_HEADER
from tests.fixtures_modeldata import wait_for

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
ENDPOINT = "scorer"
CONTROL, TREATMENT, SHADOW = "scorer-a", "scorer-b", "scorer-shadow"
ROWS = json.loads((SAMPLE / "sample-request.json").read_text())["data"]
SPLIT_SECONDS = 12  # the split test sends what fits, at most SPLIT_REQUESTS
SPLIT_REQUESTS = 4000
SIGMAS = 4  # a binomial count outside mean +- 4 sigma happens about 6 times in 100,000 runs

SCRIPT = '''
import json, os, pathlib, time
import joblib, numpy
from aksinf_runtime import ModelDataCollector

VERSION = os.environ["AKSINF_SERVICE_NAME"]
MARKS = pathlib.Path(__file__).resolve().parent / "marks"
model = inputs = predictions = None

def init():
    global model, inputs, predictions
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "diabetes-ridge.pkl"))
    inputs = ModelDataCollector("diabetes", designation="inputs", feature_names=[str(i) for i in range(10)])
    predictions = ModelDataCollector("diabetes", designation="predictions", feature_names=["progression"])

def run(raw_data):
    body = json.loads(raw_data)
    time.sleep(float(body.get("sleep", {}).get(VERSION, 0)))
    mark = body.get("mark")
    if mark:  # written once this version is done with the request (the shadow test reads it)
        MARKS.mkdir(exist_ok=True)
        (MARKS / f"{VERSION}-{mark}").write_text("done")
    if VERSION in body.get("fail", []):
        raise RuntimeError(f"{VERSION} was asked to fail")
    rows = numpy.asarray(body["data"], dtype=float)
    predicted = model.predict(rows).tolist()
    predictions.collect([[p] for p in predicted], inputs.collect(rows))
    return {"version": VERSION, "predictions": predicted}
'''


def _models(folder) -> list[dict]:
    version = {"deployment": {"autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 2}}}
    return [{
        "name": ENDPOINT, "path": str(folder),
        "deployment": {"dataCollection": {"storageEnabled": True}, "maxQueueWaitMs": 5000, "scoringTimeoutMs": 10000},
        "versions": [
            {"name": CONTROL, "isDefault": True, "versionType": "control", **version},
            {"name": TREATMENT, "trafficPercentile": 10, "modelDir": "model-v2", **version},
            {"name": SHADOW, "mirrorPercentile": 100, "deployment": {"autoScaler": {"autoscaleEnabled": False}, "numReplicas": 1}},
        ],
        # Never promoted here (minRequests is out of reach); rolled back past 1 % of max(requests, 1000) = 10 5xx.
        "rollout": {"steps": [10, 50, 100], "analysisWindowSeconds": 10, "maxServerErrorRate": 0.01,
                    "maxP99LatencyRatio": 100, "minRequests": 1000},
    }]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("endpoints")
    folder = root / "scorer"
    for model in ("model", "model-v2"):
        (folder / model).mkdir(parents=True)
        shutil.copy(SAMPLE / model / "diabetes-ridge.pkl", folder / model)
    (folder / "score.py").write_text(SCRIPT)
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "deploymentconfig.json").write_text(json.dumps({"computeType": "AKS", "authEnabled": True}))
    stack = load_stack({"purpose": "DevTest", "cluster": {"disableLocalAccounts": False}, "models": _models(folder)}, "westeurope")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AKSINF_MODELDATA_BATCH_SECONDS", "1")  # collected rows reach the files within about a second
        with LocalPlatform(local_models(stack), root / "run", listen_port=free_port(), scale_down_window_seconds=60) as running:
            yield running


def _client(platform) -> httpx.Client:
    return httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.keys[ENDPOINT][0]}"}, timeout=30)


def _score(client: httpx.Client, body: dict | None = None, headers: dict | None = None) -> httpx.Response:
    return client.post(f"/api/v1/service/{ENDPOINT}/score", json={"data": ROWS, **(body or {})}, headers=headers)


def _idle(platform, cluster: str) -> bool:
    load = envoy_load(platform.admin_url).get(cluster)
    return load is not None and load.active == 0 and load.pending == 0


def _expected(model: str) -> list[float]:
    return joblib.load(SAMPLE / model / "diabetes-ridge.pkl").predict(ROWS).tolist()


def test_versions_run_as_services_behind_the_endpoints_keys(platform):
    assert sorted(platform.keys) == [ENDPOINT]  # versions have no keys of their own
    assert {s.name for s in platform.model_services} == {CONTROL, TREATMENT, SHADOW}  # the entry's own folder does not run
    with httpx.Client(base_url=platform.url, timeout=30) as anonymous:
        assert anonymous.post(f"/api/v1/service/{ENDPOINT}/score", json={"data": ROWS}).status_code == 401
        # A version has no prefix of its own: it is reached through its endpoint only.
        assert anonymous.post(f"/api/v1/service/{TREATMENT}/score", json={"data": ROWS}).status_code == 404


def test_per_version_autoscaling_under_load_on_one_version_only(platform):
    """Slow requests pinned to the treatment: it scales up on its own load; the control keeps its replica."""
    assert platform.actuator.target(TREATMENT) == 1 and platform.actuator.target(CONTROL) == 1
    deadline = time.monotonic() + 45  # bounded; it ends once the second replica is ready (seconds, more on a busy machine)
    statuses: list[int] = []

    def loop():
        with _client(platform) as client:
            while time.monotonic() < deadline and platform.actuator.ready_replicas(TREATMENT) < 2 and len(statuses) < 900:
                statuses.append(_score(client, {"sleep": {TREATMENT: 0.2}}, headers={VERSION_HEADER: TREATMENT}).status_code)

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(loop) for _ in range(3)]:
            future.result()
    assert platform.actuator.ready_replicas(TREATMENT) == 2, statuses[-5:]
    assert platform.actuator.target(CONTROL) == 1
    assert set(statuses) <= {200, 503}


def test_split_lands_90_10_within_a_binomial_bound_and_the_header_names_who_answered(platform):
    deadline = time.monotonic() + SPLIT_SECONDS
    answers: list[tuple[int, str | None, dict]] = []

    def loop():
        with _client(platform) as client:
            while time.monotonic() < deadline and len(answers) < SPLIT_REQUESTS:
                response = _score(client)
                answers.append((response.status_code, response.headers.get(VERSION_HEADER), response.json() if response.status_code == 200 else {}))

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(loop) for _ in range(4)]:
            future.result()
    assert {status for status, _, _ in answers} == {200}, [a for a in answers if a[0] != 200][:3]
    # The header names the version whose model answered (its own predictions), never the shadow.
    expected = {CONTROL: _expected("model"), TREATMENT: _expected("model-v2")}
    for _, header, body in answers:
        assert header == body["version"] and body["predictions"] == pytest.approx(expected[header])
    n = len(answers)
    treated = sum(header == TREATMENT for _, header, _ in answers)
    bound = SIGMAS * math.sqrt(n * 0.1 * 0.9)
    assert n >= 200, f"too few requests for the bound to mean anything: {n}"
    assert abs(treated - 0.1 * n) <= bound, f"{treated} of {n} answered by {TREATMENT}; expected {0.1 * n:.0f} +- {bound:.0f}"


def test_predictions_of_both_versions_join_by_request_id_and_compare_matches_a_hand_count(platform, capsys, tmp_path):
    """Every request is mirrored to the shadow (v1's model): the control's answers (v1) agree with it exactly,
    the treatment's (v2) never exactly. Counted by hand on a snapshot of the run dir, then by `aksinf compare`.
    The shadow first works off the split test's copies: a copy its full queue has no room for is dropped by
    Envoy (mirroring is best effort), so only copies sent to an idle shadow are sure to be served."""
    shadow = next(route.cluster_name for route in platform.actuator.routes() if route.name == SHADOW)
    wait_for(lambda: _idle(platform, shadow), 30, "the shadow to work off earlier copies")
    with _client(platform) as client:
        answered = [_score(client, {"data": [row]}) for row in ROWS * 15]
    assert all(r.status_code == 200 for r in answered)
    by_control = {r.headers["x-request-id"] for r in answered if r.headers[VERSION_HEADER] == CONTROL}
    versions = [CONTROL, TREATMENT, SHADOW]

    def collected(run_dir):
        return compare.read_predictions(run_dir / "modeldata", versions, "predictions")

    wait_for(lambda: by_control <= set(collected(platform.run_dir)[SHADOW]) & set(collected(platform.run_dir)[CONTROL]), 30,
             "both predictions of every request the control answered")
    snapshot = tmp_path / "run"  # the shadow may still be working off earlier copies: count one fixed state
    for part in ("modeldata", "logs"):
        shutil.copytree(platform.run_dir / part, snapshot / part)
    found = collected(snapshot)
    shadow_joined = set(found[SHADOW]) & set(found[CONTROL])
    treatment_joined = set(found[TREATMENT]) & set(found[SHADOW])
    assert by_control <= shadow_joined and treatment_joined and not set(found[TREATMENT]) & set(found[CONTROL])
    assert all(found[SHADOW][rid] == found[CONTROL][rid] for rid in shadow_joined)

    from aksinf.cli import main

    def report(baseline: str, tolerance: float) -> dict:
        assert main(["compare", "--endpoint", ENDPOINT, "--versions", ",".join(versions), "--baseline", baseline,
                     "--tolerance", str(tolerance), "--run-dir", str(snapshot), "--json"]) == 0
        return {row["version"]: row for row in json.loads(capsys.readouterr().out)["versions"]}

    rows = report(CONTROL, 0)
    assert rows[SHADOW]["joined"] == rows[SHADOW]["agreed_exact"] == len(shadow_joined)
    assert rows[TREATMENT]["joined"] == 0 and rows[TREATMENT]["agreementRate"] is None
    assert rows[CONTROL]["requests"] >= len(by_control) and rows[CONTROL]["server_errors"] == 0
    rows = report(SHADOW, 0.5)  # v2's predictions are within 50 % of v1's, never equal
    assert rows[TREATMENT]["joined"] == rows[TREATMENT]["agreed_within_tolerance"] == len(treatment_joined)
    assert rows[TREATMENT]["agreed_exact"] == 0


def test_a_pinned_version_header_reaches_only_that_version_and_still_needs_the_key(platform):
    with _client(platform) as client:
        for version in (TREATMENT, CONTROL):
            answered = {_score(client, headers={VERSION_HEADER: version}).headers[VERSION_HEADER] for _ in range(20)}
            assert answered == {version}
    with httpx.Client(base_url=platform.url, timeout=30) as anonymous:
        response = anonymous.post(f"/api/v1/service/{ENDPOINT}/score", json={"data": ROWS}, headers={VERSION_HEADER: TREATMENT})
        assert response.status_code == 401


def test_a_shadow_that_sleeps_or_fails_changes_no_callers_answer(platform):
    """The shadow gets a copy with the caller's x-request-id, and the caller its answer while the shadow still
    sleeps (a copy the shadow's queue has no room for is dropped by Envoy: one slow copy at a time)."""
    marks = platform.model_services[0].entry_script.parent / "marks"
    with _client(platform) as client:
        for mark, asked in (("slow", {"sleep": {SHADOW: 3}, "fail": [SHADOW]}), ("failing", {"fail": [SHADOW]})):
            response = _score(client, {"mark": mark, **asked})
            assert response.status_code == 200 and response.headers[VERSION_HEADER] in (CONTROL, TREATMENT)
            assert (marks / f"{response.headers[VERSION_HEADER]}-{mark}").exists()
            if mark == "slow":  # answered while the shadow still sleeps: the caller never waited for it
                assert not (marks / f"{SHADOW}-{mark}").exists()
            wait_for(lambda: (marks / f"{SHADOW}-{mark}").exists(), 20, f"the shadow to get the {mark} copy")  # noqa: B023
        assert all(_score(client, {"fail": [SHADOW]}).status_code == 200 for _ in range(10))
    failed = [line for log in (platform.run_dir / "logs").glob(f"{SHADOW}-*.log") for line in log.read_text().splitlines()
              if "POST /score 500" in line and response.headers["x-request-id"] in line]
    assert failed  # the last failing copy: same request id as the caller's answer, a 500 nobody saw


def test_a_canary_that_starts_failing_is_rolled_back_within_its_window_and_stays_rolled_back(platform):
    """The control loop stopped, its tick driven by hand: every request between two ticks is counted."""
    platform.stop_control_plane()
    plane = platform.control_plane
    plane.tick()  # a reading to count the next window's requests from
    entry = plane.state.traffic[f"models/{ENDPOINT}"]
    assert entry.phase == "progressing" and dict(entry.split)[TREATMENT] == 10
    # maxServerErrorRate x max(requests, minRequests): the earlier tests sent the treatment fewer than minRequests.
    budget = 0.01 * 1000
    failed = 0
    with _client(platform) as client:
        for _ in range(2000):  # until the treatment's 5xx, as clients see them, exceed the budget
            failed += _score(client, {"fail": [TREATMENT]}).status_code >= 500
            if failed > budget:
                break
        plane.tick()  # the first analysis after the budget was exceeded rolls back, whatever is left of the window
        entry = plane.state.traffic[f"models/{ENDPOINT}"]
        assert entry.phase == "rolled_back", entry
        split = dict(entry.split)
        assert split[CONTROL] == 100 and split[TREATMENT] == 0
        # Envoy follows at once: no client request reaches the treatment any more.
        after = [_score(client, {"fail": [TREATMENT]}) for _ in range(50)]
    assert {r.status_code for r in after} == {200} and {r.headers[VERSION_HEADER] for r in after} == {CONTROL}
    stored = json.loads(platform.state_path.read_text())["traffic"][f"models/{ENDPOINT}"]
    assert stored["phase"] == "rolled_back" and stored["split"] == split and stored["cause"]
    metrics = httpx.get(f"http://127.0.0.1:{platform.metrics_port}/metrics").text
    assert f'aksinf_rollout_decisions_total{{action="roll_back",endpoint="{ENDPOINT}"}} 1.0' in metrics
    assert f'aksinf_endpoint_traffic_percent{{endpoint="{ENDPOINT}",version="{TREATMENT}"}} 0.0' in metrics
