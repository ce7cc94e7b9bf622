"""The router-owned store: the document round-trips, a corrupt one never raises (empty state, reason logged, one
bad entry dropped alone), the file store writes atomically and only on change, stored windows never scale down
earlier, and the live split applies only to the endpoint's current revision."""

from __future__ import annotations

import json
import logging
import os

import pytest

from router.canary import RolloutPolicy
from router.discovery import DiscoveredEndpoint
from router.spec import EndpointRoute, VersionShare
from router.state import (
    FileStateStore,
    RouterState,
    TrafficEntry,
    dump_state,
    live_endpoint_routes,
    parse_state,
    persisted_window,
    state_document,
)

ENTRY = TrafficEntry("rev-1", (("v1", 75), ("v2", 25)), "progressing", 1, 1_700_000_030.25, "")
STATE = RouterState({"models/scorer": ENTRY}, {"models/v1": ((1_700_000_000.0, 10), (1_700_000_030.0, 3))})


def endpoint(revision: str = "rev-1", rollout: bool = True) -> DiscoveredEndpoint:
    route = EndpointRoute("scorer", versions=(VersionShare("v1", 90, is_default=True, version_type="control"), VersionShare("v2", 10)))
    policy = RolloutPolicy("v1", "v2", (10, 25, 100), 60.0, 0.05, 1.5, 100, revision=revision) if rollout else None
    return DiscoveredEndpoint(route, policy, revision, "models/scorer")


def weights(route: EndpointRoute) -> dict[str, int]:
    return {v.version: v.weight for v in route.versions}


def test_the_document_round_trips_in_the_shape_of_the_design():
    assert parse_state(dump_state(STATE), "test") == STATE
    assert state_document(STATE) == {
        "traffic": {"models/scorer": {"revision": "rev-1", "split": {"v1": 75, "v2": 25}, "phase": "progressing", "step": 1,
                                      "windowStartedUnix": 1_700_000_030.25, "cause": ""}},
        "autoscaler": {"models/v1": [[1_700_000_000.0, 10], [1_700_000_030.0, 3]]},
    }
    assert parse_state(None, "test") == parse_state("", "test") == RouterState()


@pytest.mark.parametrize("text", ["{", "[]", '"state"', "null", '{"traffic": [], "autoscaler": 3}', "[" * 100_000])
def test_a_corrupt_document_reads_as_the_empty_state_with_the_reason_logged(text, caplog):
    with caplog.at_level(logging.ERROR, logger="router.state"):
        assert parse_state(text, "ConfigMap aks-inference/aks-inference-router-state") == RouterState()
    assert "aks-inference-router-state" in caplog.text


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"split": {"v1": "75"}}, "split"),
        ({"split": {"v1": True}}, "split"),
        ({"phase": "paused"}, "phase"),
        ({"step": -1}, "step"),
        ({"windowStartedUnix": "yesterday"}, "windowStartedUnix"),
        ({"revision": None}, "revision"),
    ],
)
def test_one_bad_entry_is_dropped_alone(bad, why, caplog):
    document = state_document(STATE)
    document["traffic"]["models/other"] = {**document["traffic"]["models/scorer"], **bad}
    document["autoscaler"]["models/broken"] = [[1.0, "ten"]]
    with caplog.at_level(logging.ERROR, logger="router.state"):
        assert parse_state(json.dumps(document), "test") == STATE
    assert "'models/other' dropped" in caplog.text and why in caplog.text and "'models/broken' dropped" in caplog.text


def test_the_file_store_writes_atomically_and_only_on_change(tmp_path):
    path = tmp_path / "run" / "router-state.json"
    store = FileStateStore(path)
    assert store.load() == RouterState()  # no file yet
    store.save(STATE)
    assert FileStateStore(path).load() == STATE and list(path.parent.iterdir()) == [path]  # no temporary file left
    os.utime(path, ns=(1, 1))
    store.save(STATE)
    assert path.stat().st_mtime_ns == 1  # the same state: not rewritten
    path.write_text("not json")
    assert store.load() == RouterState()  # corrupt: empty, never an exception
    store.save(STATE)
    assert FileStateStore(path).load() == STATE


def test_a_persisted_window_never_lets_a_peak_expire_earlier():
    """Rounded up to the grain and without entries a later, higher one dominates: over every horizon its highest
    value is at least the original's, and a steady window changes the document once per grain only."""
    window = ((100.2, 4), (101.2, 10), (102.2, 3), (103.2, 6), (104.2, 2), (106.1, 2))
    stored = persisted_window(window, grain=5.0)
    assert stored == ((105.0, 10), (110.0, 2))
    for horizon in (99.0, 101.0, 103.0, 104.5, 105.5, 106.0):
        assert max((d for t, d in stored if t > horizon), default=0) >= max((d for t, d in window if t > horizon), default=0)
    assert persisted_window(((106.1, 2), (107.1, 2), (108.1, 2)), grain=5.0) == persisted_window(((109.9, 2),), grain=5.0)


def test_the_live_split_applies_only_to_the_current_revision_of_an_endpoint_with_a_rollout(caplog):
    state = RouterState({"models/scorer": ENTRY})
    assert weights(live_endpoint_routes([endpoint()], state)[0]) == {"v1": 75, "v2": 25}
    assert weights(live_endpoint_routes([endpoint("rev-2")], state)[0]) == {"v1": 90, "v2": 10}  # configuration changed: configured split
    assert weights(live_endpoint_routes([endpoint(rollout=False)], state)[0]) == {"v1": 90, "v2": 10}  # no rollout: no live split
    bad = RouterState({"models/scorer": TrafficEntry("rev-1", (("v3", 50),), "progressing", 0, 0.0)})
    with caplog.at_level(logging.WARNING, logger="router.state"):
        assert weights(live_endpoint_routes([endpoint()], bad)[0]) == {"v1": 90, "v2": 10}
    assert "not applied" in caplog.text and "'v3'" in caplog.text
