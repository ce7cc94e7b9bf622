"""Per-version weights and mirror shares of a versioned endpoint (serving/endpoints.py)."""

from __future__ import annotations

import pytest

from contract.loading import validate_stack_config
from serving.endpoints import endpoint_traffic

BASE = {"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ["00000000-0000-0000-0000-000000000001"]}}


def entry(*versions: dict):
    models = [{"name": "diabetes", "path": "examples/models/diabetes", "versions": list(versions)}]
    return validate_stack_config({**BASE, "models": models}, "westeurope").models[0]


CONTROL = {"name": "diabetes-v1", "isDefault": True, "versionType": "control"}


def test_a_plain_service_has_no_split():
    assert endpoint_traffic(validate_stack_config({**BASE, "models": [{"name": "diabetes", "path": "examples/models/diabetes"}]}, "westeurope").models[0]) is None


@pytest.mark.parametrize("others, expected", [
    ([{"name": "diabetes-v2", "trafficPercentile": 10}], (("diabetes-v1", 90), ("diabetes-v2", 10))),
    ([{"name": "diabetes-v2", "trafficPercentile": 30}, {"name": "diabetes-v3", "trafficPercentile": 45}],
     (("diabetes-v1", 25), ("diabetes-v2", 30), ("diabetes-v3", 45))),
    ([{"name": "diabetes-v2", "trafficPercentile": 100}], (("diabetes-v2", 100),)),  # the default keeps nothing
    ([{"name": "diabetes-v2"}], (("diabetes-v1", 100),)),  # a version without a share answers nobody
])
def test_weights_are_whole_percents_summing_to_100_with_the_rest_on_the_default(others, expected):
    traffic = endpoint_traffic(entry(CONTROL, *others))
    assert traffic.weighted_clusters == expected and sum(w for _, w in traffic.weighted_clusters) == 100
    assert traffic.default == "diabetes-v1" and traffic.mirrors == ()


def test_the_default_need_not_come_first():
    traffic = endpoint_traffic(entry({"name": "diabetes-v2", "trafficPercentile": 20}, CONTROL))
    assert traffic.weighted_clusters == (("diabetes-v2", 20), ("diabetes-v1", 80))


def test_a_shadow_gets_mirror_copies_and_no_client_traffic():
    traffic = endpoint_traffic(entry(CONTROL, {"name": "diabetes-v2", "trafficPercentile": 10},
                                     {"name": "diabetes-v3", "mirrorPercentile": 25}))
    assert traffic.weighted_clusters == (("diabetes-v1", 90), ("diabetes-v2", 10))
    assert traffic.mirrors == (("diabetes-v3", 25),)


def test_a_live_split_replaces_the_configured_share_and_the_default_absorbs_it():
    configured = entry(CONTROL, {"name": "diabetes-v2", "trafficPercentile": 10}, {"name": "diabetes-v3", "trafficPercentile": 5})
    assert endpoint_traffic(configured, {"diabetes-v2": 50}).weighted_clusters == (("diabetes-v1", 45), ("diabetes-v2", 50), ("diabetes-v3", 5))
    assert endpoint_traffic(configured, {"diabetes-v2": 0}).weighted_clusters == (("diabetes-v1", 95), ("diabetes-v3", 5))


@pytest.mark.parametrize("live, words", [
    ({"diabetes-v9": 10}, "not a version"),
    ({"diabetes-v1": 10}, "is the default"),
    ({"diabetes-v2": 120}, "0-100"),
    ({"diabetes-v2": 96}, "sum past 100"),
])
def test_an_impossible_live_split_is_refused(live, words):
    configured = entry(CONTROL, {"name": "diabetes-v2", "trafficPercentile": 10}, {"name": "diabetes-v3", "trafficPercentile": 5})
    with pytest.raises(ValueError, match=words):
        endpoint_traffic(configured, live)
