"""Where collected model data goes: a folder (local mode), a blob container (AKS, with workload
identity: no account key anywhere) or the local Blob Storage emulator (loopback only). Each batch
the shipper seals becomes one object under a name fixed in advance; `put` overwrites, so a retry
never duplicates records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

# Azurite's documented development account (public, not a secret); accepted only on loopback.
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EMULATOR_CREDENTIAL = {"account_name": EMULATOR_ACCOUNT, "account_key": EMULATOR_KEY}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Sink(Protocol):
    def put(self, name: str, data: bytes) -> None: ...


class FolderSink:
    """Local mode: blobs become files under `root` (same relative names)."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, name: str, data: bytes) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)

    def __repr__(self) -> str:
        return f"folder {self.root}"


class BlobSink:
    """One container of a storage account (or of the local emulator); each batch is a block blob."""

    def __init__(self, url: str):
        from azure.storage.blob import ContainerClient

        parsed = urlparse(url)
        self.url = url
        self.emulator = parsed.scheme == "http"
        # Our own back-off handles failures: no SDK retries hiding an outage for minutes.
        transport = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 30}
        if self.emulator:
            credential = EMULATOR_CREDENTIAL
        else:
            from azure.identity import (
                DefaultAzureCredential,  # workload identity in the pod; az login locally
            )

            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        self.container = ContainerClient.from_container_url(url, credential=credential, **transport)
        self._container_checked = not self.emulator  # the platform creates the cloud container

    def put(self, name: str, data: bytes) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        if not self._container_checked:
            try:
                self.container.create_container()
            except ResourceExistsError:
                pass
            self._container_checked = True
        self.container.upload_blob(name, data, overwrite=True, content_settings=ContentSettings(content_type="application/x-ndjson"))

    def __repr__(self) -> str:
        return f"blob container {self.url}"


def check_destination(destination: str) -> None:
    parsed = urlparse(destination)
    if parsed.scheme == "file":
        return
    if parsed.scheme == "https" and parsed.hostname and parsed.path.strip("/"):
        return
    if parsed.scheme == "http":
        if parsed.hostname not in LOOPBACK_HOSTS:
            raise ValueError("plain http is only for the local Blob Storage emulator on 127.0.0.1; use https")
        if len([p for p in parsed.path.split("/") if p]) != 2:
            raise ValueError("an emulator URL is http://127.0.0.1:PORT/<account>/<container>")
        return
    raise ValueError("expected file:///folder, https://<account>.blob.core.windows.net/<container> or the emulator's http://127.0.0.1:PORT/<account>/<container>")


def sink_for(destination: str) -> Sink:
    check_destination(destination)
    parsed = urlparse(destination)
    if parsed.scheme == "file":
        return FolderSink(Path(parsed.path))
    return BlobSink(destination)
