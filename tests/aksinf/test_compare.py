"""`aksinf compare`: the versions of an endpoint on records written by the real collector and server log
formatter, joined by request id, against a hand count."""

from __future__ import annotations

import json
import logging

import flask
import pytest

from aksinf import cli
from aksinf.compare import Served, close, percentile, report
from aksinf_runtime import collector, environment
from aksinf_runtime.logs import JsonFormatter
from tests.fixtures_modeldata import fresh_collection  # noqa: F401  (fixture)

BASELINE = {f"r{n}": n * 1.0 for n in range(1, 7)}
# r2 is off by 1e-7 (agrees within the default tolerance only), r3 disagrees, r6 failed on the shadow.
SHADOW = {"r1": 1.0, "r2": 2.0000001, "r3": 3.5, "r4": 4.0, "r5": 5.0}


def collect(version: str, predictions: dict[str, float]) -> None:
    """What a version's entry script does: one ModelDataCollector.collect per request, inside the request."""
    app = flask.Flask(version)
    predictions_dc = collector.ModelDataCollector("diabetes-ridge", designation="predictions", feature_names=["progression"],
                                                  webservice_name=version, model_version="1")
    for request_id, value in predictions.items():
        with app.test_request_context(headers={"x-request-id": request_id}):
            predictions_dc.collect([value])


def log(path, version: str, lines: list[tuple[str, str]], monkeypatch) -> None:
    """The server's per-request lines, as aksinf_runtime.logs formats them."""
    monkeypatch.setenv(environment.SERVICE_NAME, version)
    formatter = JsonFormatter()
    with path.open("w") as out:
        for request_id, message in lines:
            record = logging.LogRecord("azmlinfsrv", logging.INFO, __file__, 1, message, None, None)
            record.request_id = request_id
            out.write(formatter.format(record) + "\n")


@pytest.fixture
def run_dir(tmp_path, monkeypatch, fresh_collection):  # noqa: F811
    monkeypatch.setenv(environment.MODELDATA_ENABLED, "true")
    monkeypatch.setenv(environment.MODELDATA_DESTINATION, (tmp_path / "run" / "modeldata").as_uri())
    monkeypatch.setenv(environment.MODELDATA_SPOOL, str(tmp_path / "spool"))
    collect("diabetes-v1", BASELINE)
    collect("diabetes-v3", SHADOW)
    assert collector.shared_shipper().close(timeout=10)
    logs = tmp_path / "run" / "logs"
    logs.mkdir()
    log(logs / "diabetes-v1-5001.log", "diabetes-v1", [(f"r{n}", f"POST /score 200 {n * 10}.000ms 4") for n in range(1, 7)], monkeypatch)
    log(logs / "diabetes-v3-5002.log", "diabetes-v3",
        [(f"r{n}", f"POST /score 200 {n * 100}.000ms 4") for n in range(1, 6)]
        + [("r6", "POST /score 500 5.000ms 20"), ("r7", "POST /score?verbose=1 400 1.000ms 20"), ("", "GET / 200 0.100ms 7"),
           ("", "not a request line")], monkeypatch)
    return tmp_path / "run"


def test_the_report_matches_a_hand_count(run_dir, capsys):
    code = cli.main(["compare", "--endpoint", "diabetes", "--versions", "diabetes-v1,diabetes-v3", "--run-dir", str(run_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = {row["version"]: row for row in json.loads(out)["versions"]}
    baseline, shadow = rows["diabetes-v1"], rows["diabetes-v3"]
    assert (baseline["predictions"], baseline["joined"], baseline["requests"], baseline["server_errors"]) == (6, 0, 6, 0)
    assert baseline["latency_ms"] == {"p50": 30.0, "p90": 60.0, "p99": 60.0}
    assert (shadow["predictions"], shadow["joined"], shadow["agreed_exact"], shadow["agreed_within_tolerance"]) == (5, 5, 3, 4)
    assert (shadow["agreementRate"], shadow["agreementRateWithinTolerance"]) == (0.6, 0.8)
    assert (shadow["requests"], shadow["server_errors"], shadow["client_errors"]) == (7, 1, 1)
    assert shadow["latency_ms"] == {"p50": 200.0, "p90": 500.0, "p99": 500.0}


def test_the_table_names_the_baseline_and_each_rate(run_dir, capsys):
    assert cli.main(["compare", "--endpoint", "diabetes", "--versions", "diabetes-v1,diabetes-v3", "--run-dir", str(run_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "agreement with diabetes-v1" in table[0]
    assert table[3].split()[:5] == ["diabetes-v3", "5", "5", "60.0%", "80.0%"]


def test_a_tighter_tolerance_counts_only_exact_agreement(run_dir, capsys):
    cli.main(["compare", "--endpoint", "diabetes", "--versions", "diabetes-v1,diabetes-v3", "--run-dir", str(run_dir),
              "--tolerance", "0", "--json"])
    shadow = json.loads(capsys.readouterr().out)["versions"][1]
    assert shadow["agreed_within_tolerance"] == shadow["agreed_exact"] == 3


def test_bad_flags_are_reported_without_a_traceback(tmp_path, capsys):
    code = cli.main(["compare", "--endpoint", "diabetes", "--versions", "a-1,a-2", "--baseline", "a-9", "--run-dir", str(tmp_path)])
    assert code == 2 and "--baseline must be one of a-1, a-2" in capsys.readouterr().err


@pytest.mark.parametrize("q, expected", [(50, 3), (90, 5), (99, 5), (1, 1)])
def test_percentiles_are_nearest_rank(q, expected):
    assert percentile([5, 1, 4, 2, 3], q) == expected


@pytest.mark.parametrize("a, b, tolerance, expected", [
    ({"y": [1.0, 2.0]}, {"y": [1.0, 2.0 + 1e-9]}, 1e-6, True),
    ({"y": 1.0}, {"z": 1.0}, 1e-6, False),
    ([1.0, 2.0], [1.0], 1e-6, False),
    (True, 1, 1e-6, False),  # a class label is not a number
    ("cat", "cat", 0, True),
])
def test_numbers_agree_within_tolerance_structures_by_element(a, b, tolerance, expected):
    assert close(a, b, tolerance) is expected


def test_a_version_without_records_reports_no_rate():
    result = report("e", ["v1", "v2"], "v1", {"v1": {"r1": [1]}}, [Served("v1", "r1", 200, 3.0)], 0.0)
    assert result.versions[1].agreement_rate is None and result.versions[1].latency_ms == {}
