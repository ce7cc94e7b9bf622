"""`aksinf plan --live-state FILE`: each versioned endpoint's configured split beside the live one the router
owns (its ConfigMap's state.json), the file read strictly (every problem keyed, exit 2, nothing planned or
written), and without the flag one line saying where the live split lives."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from aksinf.cli import main as aksinf
from contract.errors import ConfigError
from review.plan import LiveTraffic, main, read_live_state
from router.discovery import discover_endpoints
from tests.pulumi_harness import with_config

ENDPOINT = {"name": "diabetes", "path": "examples/models/diabetes", "versions": [
    {"name": "diabetes-v1", "isDefault": True, "versionType": "control"},
    {"name": "diabetes-v2", "trafficPercentile": 10},
    {"name": "diabetes-v3", "mirrorPercentile": 5},
]}
STATE = {
    "traffic": {"models/diabetes": {"revision": "3f2a9c", "split": {"diabetes-v1": 100, "diabetes-v2": 0}, "phase": "rolled-back",
                                    "step": 1, "windowStartedUnix": 1700000000.5, "cause": "5xx rate 0.2 > 0.01"}},
    "autoscaler": {"models/diabetes-v1": [[1700000000.0, 2]]},
}


def write(tmp_path: Path, document, raw: str | None = None) -> Path:
    path = tmp_path / "state.json"
    path.write_text(raw if raw is not None else json.dumps(document))
    return path


def endpoint_section(output: str) -> list[str]:
    section = output.split("Endpoints (configured target | live split):\n", 1)[1]
    return [line.strip() for line in section.splitlines() if line.startswith("  ")][:2]


def test_the_router_s_document_is_read_as_it_is_written(tmp_path):
    assert read_live_state(write(tmp_path, STATE)) == {
        "models/diabetes": LiveTraffic({"diabetes-v1": 100, "diabetes-v2": 0}, "3f2a9c", "rolled-back", 1, "5xx rate 0.2 > 0.01")}
    assert read_live_state(write(tmp_path, {})) == {}  # a router that applied nothing yet


@pytest.mark.parametrize(("document", "raw", "key", "problem"), [
    (None, "{not json", "live-state", "is not JSON"),
    ([1, 2], None, "live-state", "must be a JSON object"),
    ({"traffic": []}, None, "live-state", "must be a JSON object"),
    ({"traffic": {"diabetes": {"split": {}}}}, None, "traffic[diabetes]", "<namespace>/<endpoint>"),
    ({"traffic": {"models/diabetes": "v2"}}, None, "traffic[models/diabetes]", "must be an object"),
    ({"traffic": {"models/diabetes": {"split": {"diabetes-v2": 101}}}}, None, "traffic[models/diabetes].split", "whole percent 0-100"),
    ({"traffic": {"models/diabetes": {"split": {"diabetes-v2": True}}}}, None, "traffic[models/diabetes].split", "whole percent 0-100"),
    ({"traffic": {"models/diabetes": {"split": {}, "step": "2"}}}, None, "traffic[models/diabetes].step", "whole number"),
])
def test_a_document_it_cannot_read_is_a_keyed_error(tmp_path, document, raw, key, problem):
    with pytest.raises(ConfigError) as excinfo:
        read_live_state(write(tmp_path, document, raw))
    assert [(i.key, problem in i.problem) for i in excinfo.value.issues] == [(key, True)]


def test_a_missing_file_is_a_keyed_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        read_live_state(tmp_path / "absent.json")


def test_a_bad_file_stops_the_plan_before_anything_runs(tmp_path, capsys):
    bad = write(tmp_path, {"traffic": {"models/diabetes": {"split": {"diabetes-v2": 150}}}})
    code = aksinf(["plan", "--stack", "dev", "--out", str(tmp_path / "plans"), "--live-state", str(bad)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert f"1 problem(s) in the live state {bad}:" in captured.err and "traffic[models/diabetes].split" in captured.err
    assert not (tmp_path / "plans").exists()


def test_the_plan_shows_the_configured_split_and_the_live_one_apart(tmp_path):
    config = with_config("dev", models=[ENDPOINT])
    out = io.StringIO()
    assert main("dev", tmp_path, config=config, out=out) == 0
    configured, where = endpoint_section(out.getvalue())
    assert configured == "models/diabetes                          configured diabetes-v1 90 %, diabetes-v2 10 %; mirrored diabetes-v3 5 %"
    assert where.startswith("live split: kept by the router in ConfigMap aks-inference-router-state (namespace aks-inference, key state.json)")
    # The revision the router computes for the endpoint Service the plan holds: a split decided for it is current.
    [endpoint] = [r for r in json.loads((tmp_path / "dev.json").read_text())["resources"] if r["name"] == "aks-inference-models-diabetes-service"]
    [read] = discover_endpoints([endpoint["inputs"]], [], [])
    current = {"traffic": {"models/diabetes": {**STATE["traffic"]["models/diabetes"], "revision": read.revision}}}
    out = io.StringIO()
    assert main("dev", tmp_path, config=config, live_state=read_live_state(write(tmp_path, current)), out=out) == 0
    [row] = endpoint_section(out.getvalue())[:1]
    assert row.endswith(f"|  live diabetes-v1 100 %, diabetes-v2 0 % (phase rolled-back, step 1, cause 5xx rate 0.2 > 0.01, revision {read.revision})")
    assert "Changes: none" in out.getvalue()  # the live split is no change to apply
    out = io.StringIO()
    main("dev", tmp_path, config=config, live_state=read_live_state(write(tmp_path, STATE)), out=out)
    assert endpoint_section(out.getvalue())[0].endswith("revision 3f2a9c); stale: decided for another configuration, the router drops it and applies the configured split")
    out = io.StringIO()
    main("dev", tmp_path, config=config, live_state={}, out=out)
    assert endpoint_section(out.getvalue())[0].endswith("|  live: the configured split (the router holds no other)")
