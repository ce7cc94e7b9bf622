"""The gate in front of Envoy's shared files: every value a service carries is checked before it is rendered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router.spec import (
    INT32_MAX,
    UINT32_MAX,
    Endpoint,
    RouterSettings,
    ServiceRoute,
    refuse_unsafe,
    route_problems,
)

GOOD = ServiceRoute("diabetes", keys=("p" * 32, "s" * 32), endpoints=(Endpoint("10.244.1.7", 5001), Endpoint("fd00::7", 5001)))


def test_a_route_with_safe_values_has_no_problem():
    assert route_problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        # Each of these made Envoy reject the whole file (checked with `envoy --mode validate`) or serve unsafely.
        ({"scoring_timeout_ms": 0}, "scoring_timeout_ms=0 must be a whole number from 1 to 2147483647"),  # 0: no timeout
        ({"scoring_timeout_ms": -1}, "scoring_timeout_ms=-1 must be a whole number from 1 to 2147483647"),
        ({"scoring_timeout_ms": 10**15}, "scoring_timeout_ms=1000000000000000 must be a whole number from 1 to 2147483647"),
        ({"max_concurrent": 0}, "max_concurrent=0 must be a whole number from 1 to 2147483647"),
        ({"max_concurrent": 2**32}, "max_concurrent=4294967296 must be a whole number from 1 to 2147483647"),
        ({"max_queue_wait_ms": 0}, "max_queue_wait_ms=0 must be a whole number from 1 to 2147483647"),
        ({"endpoints": (Endpoint("model.example", 5001),)}, "endpoints='model.example:5001' is not an IP address and port"),
        ({"endpoints": (Endpoint("10.0.0.1", 70000),)}, "endpoints='10.0.0.1:70000' is not an IP address and port"),
        ({"keys": ("k" * 32, "k" * 32)}, "keys: the primary and secondary key are the same (Envoy rejects duplicate keys)"),
        ({"keys": ("a\nb" * 8,)}, "keys: a key is empty or holds characters a header cannot carry"),
        ({"name": "a/b"}, "name='a/b' is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)"),
        ({"namespace": "Models"}, "namespace='Models' is not a Kubernetes namespace name"),
        ({"auth": "Key"}, "auth='Key' is not one of key, token, none (exactly, lower case)"),
    ],
)
def test_every_value_envoy_would_reject_or_serve_open_is_a_problem(change, problem):
    assert route_problems(replace(GOOD, **change)) == [problem]


def test_a_problem_never_shows_a_key():
    assert not any("k" * 32 in p for p in route_problems(replace(GOOD, keys=("k" * 32, "k" * 32, "k" * 32))))


def test_routes_sharing_a_name_or_a_cluster_are_all_refused_and_checking_twice_changes_nothing():
    routes = [ServiceRoute("diabetes", "models"), ServiceRoute("diabetes", "vision"), ServiceRoute("cde", "a-b"), ServiceRoute("b-cde", "a"), GOOD]
    checked = refuse_unsafe(routes)
    assert [r.problems for r in checked] == [
        ("service name 'diabetes' is claimed by 3 services (namespaces models, vision)",),
        ("service name 'diabetes' is claimed by 3 services (namespaces models, vision)",),
        ("cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",),
        ("cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",),
        ("service name 'diabetes' is claimed by 3 services (namespaces models, vision)",),
    ]
    assert refuse_unsafe(checked) == checked


def test_a_route_refused_already_keeps_its_reasons():
    refused = replace(GOOD, max_concurrent=0, problems=("aks-inference/max-concurrent=0 must be ...",))
    assert refuse_unsafe([refused])[0].problems == ("aks-inference/max-concurrent=0 must be ...",)


def test_the_queue_never_exceeds_what_envoys_uint32_threshold_holds():
    many = ServiceRoute("big", max_concurrent=INT32_MAX, max_queue_wait_ms=INT32_MAX, latency_ms=0.001, endpoints=(GOOD.endpoints[0],))
    assert many.queue_capacity() == UINT32_MAX


def test_the_router_bounds_are_the_contracts():
    from contract import limits, v1_files

    assert INT32_MAX == limits.INT32_MAX
    for name in ("abc", "a" * 32, "diabetes-2"):
        assert route_problems(ServiceRoute(name)) == [] and v1_files.check_service_name(name) == name
    for name in ("ab", "a" * 33, "2abc", "abc-", "Abc"):
        assert route_problems(ServiceRoute(name)) != []
        with pytest.raises(ValueError):
            v1_files.check_service_name(name)


def test_envoy_admin_is_on_loopback_whatever_the_settings(tmp_path):
    from router.environment import RouterEnvironment

    in_cluster = RouterEnvironment(config_dir=str(tmp_path), tls_dir=str(tmp_path)).router_settings()
    assert (in_cluster.listen_host, in_cluster.admin_host, in_cluster.admin_port) == ("0.0.0.0", "127.0.0.1", 9901)
    with pytest.raises(TypeError):
        RouterSettings(config_dir=tmp_path, listen_port=1, admin_port=2, admin_host="0.0.0.0")  # not a setting at all
