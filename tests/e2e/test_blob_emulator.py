"""Azurite on 127.0.0.1 when its port is taken between choosing it and binding it (seen once in a parallel run):
a port the emulator chose is replaced, a port the caller gave is refused by name."""

from __future__ import annotations

import socket

import pytest

from local.blob_emulator import BlobEmulator, PortTaken
from local.net import LOOPBACK


@pytest.fixture
def taken_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_chosen_port_taken_before_azurite_binds_it_is_replaced(tmp_path, taken_port):
    emulator = BlobEmulator(tmp_path / "azurite")
    emulator.port = taken_port  # as if another process took the port free_port() had just found free
    try:
        emulator.start()
        assert emulator.port != taken_port
        assert emulator.blobs("anything") == {}  # it answers on the new port
    finally:
        emulator.stop()


def test_a_given_port_that_is_taken_is_refused_by_name(tmp_path, taken_port):
    emulator = BlobEmulator(tmp_path / "azurite", port=taken_port)
    with pytest.raises(PortTaken, match=f"{LOOPBACK}:{taken_port} is in use"):
        emulator.start()
    assert emulator.port == taken_port
