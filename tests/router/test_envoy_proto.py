"""The binary xDS encoder without Envoy: what it writes is what protobuf's own conversion of the whole document
gives, for a configuration with every feature on; a change converts only what changed; the caller's documents
are left as they were; and a type the shipped descriptors lack is refused by name. Envoy loading the files is
tested with the real binary in tests/e2e (every router test there reads them)."""

from __future__ import annotations

import copy
import json

import pytest
from google.protobuf import json_format, message_factory, text_format

from router.envoy_config import CLUSTERS_FILE, PEER_ROUTES_FILE, ROUTES_FILE, render_dynamic
from router.envoy_proto import DISCOVERY_RESPONSE, ProtoEncoder, UnknownResource, shipped_pool
from router.spec import (
    Endpoint,
    EndpointRoute,
    JwtSettings,
    ServiceRoute,
    TokenAuthorization,
    VersionShare,
)
from tests.fixtures_router import PRIMARY, SECONDARY, render_settings, sample_routes

POOL = shipped_pool()
RESPONSE = message_factory.GetMessageClass(POOL.FindMessageTypeByName(DISCOVERY_RESPONSE))


def _everything(tmp_path, services: int = 3) -> dict[str, dict]:
    """Key, token (roles, clients, audience) and open services, replicas over TLS-less HTTP, an endpoint with a
    treatment, a pinned header and a mirror, a refused service, token validation and the peer listener."""
    versions = (VersionShare("scorer-a", 90, is_default=True, version_type="control"), VersionShare("scorer-b", 10), VersionShare("scorer-s", 0, 100))
    endpoint = EndpointRoute("scorer", keys=(PRIMARY, SECONDARY), versions=versions)
    replica = (Endpoint("127.0.0.1", 5001),)
    routes = [
        *sample_routes(),
        ServiceRoute("roles", auth="token", endpoints=replica, token_authorization=TokenAuthorization(
            required_roles=("Model.Score",), allowed_client_ids=("00000000-0000-0000-0000-000000000001",), audience="api://own")),
        ServiceRoute("refused", auth="none", max_concurrent=2**32),
        *(ServiceRoute(v.version, keys=(PRIMARY,), endpoint="scorer", endpoints=replica) for v in versions),
        *(ServiceRoute(f"svc-{n}", keys=(PRIMARY,), endpoints=replica) for n in range(services)),
    ]
    me = Endpoint("10.0.0.1", 8081)
    settings = render_settings(
        tmp_path, jwt=JwtSettings("https://issuer.example", ("api://x",), local_jwks_path="/dev/null"),
        peer_port=me.port, peer_address=me.host, peers=(me, Endpoint("10.0.0.2", 8081)),
    )
    return render_dynamic(routes, settings, [endpoint])


def _whole(document: dict):
    """protobuf's own conversion of the whole document (a copy: json_format reorders an Any's keys)."""
    return json_format.ParseDict(copy.deepcopy(document), RESPONSE(), descriptor_pool=POOL)


def _text(message) -> str:
    """Any fields unpacked: the same content whatever order an Any's fields were serialized in."""
    return text_format.MessageToString(message, descriptor_pool=POOL)


@pytest.mark.parametrize("name", [CLUSTERS_FILE, ROUTES_FILE, PEER_ROUTES_FILE])
def test_every_binary_file_holds_what_protobufs_conversion_of_the_whole_document_holds(tmp_path, name):
    document = _everything(tmp_path)[name]
    encoded = ProtoEncoder(POOL).discovery_response(document)
    assert _text(RESPONSE.FromString(encoded)) == _text(_whole(document))
    assert RESPONSE.FromString(encoded).version_info == document["version_info"]


def test_a_decoded_file_encodes_to_the_same_bytes(tmp_path):
    """What a restarted writer reads back (the clusters a predecessor left) is the same configuration."""
    encoder = ProtoEncoder(POOL)
    for name in (CLUSTERS_FILE, ROUTES_FILE):
        encoded = encoder.discovery_response(_everything(tmp_path)[name])
        assert ProtoEncoder(POOL).discovery_response(encoder.decode(encoded)) == encoded


def test_one_more_service_converts_only_its_own_cluster_and_route_and_gives_what_a_fresh_encoder_gives(tmp_path):
    before, after = _everything(tmp_path, services=40), _everything(tmp_path, services=41)
    for name in (CLUSTERS_FILE, ROUTES_FILE):
        encoder = ProtoEncoder(POOL)
        encoder.discovery_response(before[name])
        converted = encoder.converted
        encoded = encoder.discovery_response(after[name])
        # The new element (its fields, and each element of its short lists), and the parts around the elements
        # (version_info, the route table's and the virtual host's own fields), which are not remembered: a few,
        # where 41 services converted afresh would be over a hundred.
        assert encoder.converted - converted <= 8, (name, encoder.converted - converted)
        assert encoded == ProtoEncoder(POOL).discovery_response(after[name])
        unchanged = encoder.converted
        assert encoder.discovery_response(after[name]) == encoded and encoder.converted - unchanged <= 3


def test_the_callers_documents_are_left_as_they_were(tmp_path):
    files = _everything(tmp_path)
    texts = {name: json.dumps(document) for name, document in files.items()}  # key order included
    for name in (CLUSTERS_FILE, ROUTES_FILE, PEER_ROUTES_FILE):
        ProtoEncoder(POOL).discovery_response(files[name])
    assert {name: json.dumps(document) for name, document in files.items()} == texts


def test_a_type_the_shipped_descriptors_lack_is_refused_by_name():
    document = {"version_info": "1", "resources": [{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "x"}]}
    with pytest.raises(UnknownResource, match=r"envoy\.config\.listener\.v3\.Listener is not among the shipped Envoy descriptors"):
        ProtoEncoder(POOL).discovery_response(document)
    cluster = {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "x", "no_such_field": 1}
    with pytest.raises(UnknownResource, match=r"envoy\.config\.cluster\.v3\.Cluster: .*no_such_field"):
        ProtoEncoder(POOL).discovery_response({"version_info": "1", "resources": [cluster]})
