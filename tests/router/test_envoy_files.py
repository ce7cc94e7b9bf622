"""ConfigWriter without Envoy: binary clusters and routes, JSON for the rest, nothing re-rendered or rewritten for unchanged inputs, and the
safe order kept from memory, also across a restart of the writer next to files a predecessor left."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from router import envoy_files
from router.envoy_files import BOOTSTRAP_FILE, ConfigWriter, read_dynamic_file
from router.spec import (
    Endpoint,
    EndpointRoute,
    ServiceRoute,
    VersionShare,
    with_live_split,
)
from tests.fixtures_router import render_settings


def _route(name: str, port: int = 9000) -> ServiceRoute:
    return ServiceRoute(name, auth="none", endpoints=(Endpoint("127.0.0.1", port),))


def _clusters(directory) -> list[str]:
    return [c["name"] for c in read_dynamic_file(directory / "cds.pb")["resources"]]


def test_the_router_pod_starts_envoy_with_the_worker_count_of_its_environment(tmp_path, monkeypatch):
    """`python -m router envoy` passes AKSINF_ENVOY_CONCURRENCY on; without it Envoy keeps its own default."""
    from router import __main__ as entry
    from router.environment import RouterEnvironment

    (tmp_path / BOOTSTRAP_FILE).write_text("{}")
    started: list[list[str]] = []

    def exec_envoy(path, argv):
        started.append(argv)
        raise SystemExit(0)  # execv does not return

    monkeypatch.setattr(entry.os, "execv", exec_envoy)
    for concurrency in (2, None):
        with pytest.raises(SystemExit):
            entry.run_envoy(RouterEnvironment(config_dir=str(tmp_path), envoy_concurrency=concurrency))
    with_limit, default = started
    assert with_limit[with_limit.index("--concurrency") + 1] == "2" and "--concurrency" not in default
    assert with_limit[:3] == default[:3] == [envoy_files.envoy_binary(), "-c", str(tmp_path / BOOTSTRAP_FILE)]


def test_clusters_and_routes_are_binary_the_rest_json_and_the_bootstrap_points_envoy_at_them(tmp_path):
    settings = render_settings(tmp_path)
    writer = ConfigWriter(tmp_path)
    assert writer.write([_route("alpha")], settings) == ["cds.pb", "rds.pb", "lds.json"]
    bootstrap = json.loads(writer.write_bootstrap(settings).read_text())
    assert writer.write_bootstrap(settings).name == BOOTSTRAP_FILE
    sources = bootstrap["dynamic_resources"]
    assert sources["cds_config"]["path_config_source"]["path"] == str(tmp_path / "cds.pb")
    assert sources["lds_config"]["path_config_source"]["path"] == str(tmp_path / "lds.json")
    for name, version in writer.versions.items():
        assert read_dynamic_file(tmp_path / name)["version_info"] == version
    listener = json.loads((tmp_path / "lds.json").read_text())["resources"][0]
    rds = listener["filter_chains"][0]["filters"][0]["typed_config"]["rds"]
    assert rds["config_source"]["path_config_source"]["path"] == str(tmp_path / "rds.pb")


def test_unchanged_inputs_render_nothing_and_write_nothing(tmp_path, monkeypatch):
    settings = render_settings(tmp_path)
    writer = ConfigWriter(tmp_path)
    rendered = []
    render = envoy_files.render_dynamic
    monkeypatch.setattr(envoy_files, "render_dynamic", lambda routes, s, endpoints: rendered.append(1) or render(routes, s, endpoints))
    routes = [_route("alpha"), _route("beta")]
    writer.write(routes, settings)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert writer.write(list(routes), settings) == []
    assert len(rendered) == 1  # the second call compared inputs; it neither rendered nor read a file
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    # A changed input that renders the same files (a replica order Envoy does not see) writes nothing either.
    assert writer.write([routes[1], routes[0]], settings) == [] and len(rendered) == 2


def test_one_new_endpoint_rewrites_only_the_clusters(tmp_path):
    settings = render_settings(tmp_path)
    writer = ConfigWriter(tmp_path)
    writer.write([_route("alpha"), _route("beta")], settings)
    rds = (tmp_path / "rds.pb").stat().st_mtime_ns
    more = replace(_route("beta"), endpoints=(Endpoint("127.0.0.1", 9000), Endpoint("127.0.0.1", 9001)))
    assert writer.write([_route("alpha"), more], settings) == ["cds.pb"]
    assert (tmp_path / "rds.pb").stat().st_mtime_ns == rds


def test_the_safe_order_comes_from_memory_not_from_the_files(tmp_path):
    """The writer never re-reads what it wrote: an edited cds.pb on disk changes nothing it decides."""
    settings = render_settings(tmp_path)
    writer = ConfigWriter(tmp_path)
    writer.write([_route("alpha")], settings)
    (tmp_path / "cds.pb").write_text("not json")
    assert writer.write([_route("beta")], settings) == ["cds.pb", "rds.pb", "cds.pb"]  # interim holds both
    assert _clusters(tmp_path) == ["model-models-beta"]


def test_a_restarted_writer_reads_the_previous_files_once(tmp_path):
    """A control plane restarted next to a running Envoy: what Envoy already serves is not rewritten,
    and a service it replaces still leaves in the safe order (interim CDS first)."""
    settings = render_settings(tmp_path)
    ConfigWriter(tmp_path).write([_route("alpha")], settings)
    restarted = ConfigWriter(tmp_path)
    assert restarted.write([_route("alpha")], settings) == []
    again = ConfigWriter(tmp_path)
    assert again.write([_route("beta")], settings) == ["cds.pb", "rds.pb", "cds.pb"]
    assert _clusters(tmp_path) == ["model-models-beta"]


def test_an_unreadable_previous_file_is_replaced_in_the_order_for_additions(tmp_path):
    settings = render_settings(tmp_path)
    (tmp_path / "cds.pb").write_text("resources: [left by an older version]")
    assert ConfigWriter(tmp_path).write([_route("alpha")], settings) == ["cds.pb", "rds.pb", "lds.json"]
    assert _clusters(tmp_path) == ["model-models-alpha"]


def test_an_endpoint_is_written_with_its_versions_and_a_traffic_change_rewrites_the_routes_alone(tmp_path):
    settings = render_settings(tmp_path)
    writer = ConfigWriter(tmp_path)
    versions = [replace(_route("v-one", 9001), endpoint="scorer"), replace(_route("v-two", 9002), endpoint="scorer")]
    endpoint = EndpointRoute("scorer", auth="none", versions=(VersionShare("v-one", 90, is_default=True), VersionShare("v-two", 10)))
    assert writer.write(versions, settings, [endpoint]) == ["cds.pb", "rds.pb", "lds.json"]  # clusters before the routes that use them
    assert writer.write(versions, settings, [endpoint]) == []
    shifted, _ = with_live_split(endpoint, {"v-two": 50})
    assert writer.write(versions, settings, [shifted]) == ["rds.pb"]
    weighted = read_dynamic_file(tmp_path / "rds.pb")["resources"][0]["virtual_hosts"][0]["routes"][-2]["route"]["weighted_clusters"]
    assert [c["weight"] for c in weighted["clusters"]] == [50, 50]
    assert writer.write(versions, settings) == ["rds.pb"]  # existing callers: no endpoints, the versions keep their clusters
    assert _clusters(tmp_path) == ["model-models-v-one", "model-models-v-two"]
