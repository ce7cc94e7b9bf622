"""Leader election on a coordination.k8s.io/v1 Lease: only the leader router replica scales models.

Every router replica routes; scaling decisions must come from one place or replicas
would fight over `deployments/scale`. The logic is plain (time injected, API behind a
small protocol) so it is tested without a cluster; `KubernetesLeases` adapts the client.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Conflict(Exception):
    """Someone else changed the Lease since we read it (optimistic concurrency)."""


@dataclass(frozen=True)
class Lease:
    holder: str | None
    renew_time: float  # epoch seconds
    duration_seconds: int
    transitions: int = 0
    version: str | None = None  # resourceVersion


class LeaseApi(Protocol):
    def get(self) -> Lease | None: ...

    def create(self, lease: Lease) -> Lease: ...

    def replace(self, lease: Lease) -> Lease: ...


class LeaderElector:
    def __init__(self, identity: str, api: LeaseApi, clock: Callable[[], float], duration_seconds: int = 15):
        self.identity = identity
        self.api = api
        self.clock = clock
        self.duration_seconds = duration_seconds

    def try_acquire_or_renew(self) -> bool:
        """One election round; True while this replica holds the lease."""
        now = self.clock()
        try:
            current = self.api.get()
            if current is None:
                self.api.create(Lease(self.identity, now, self.duration_seconds))
                return True
            expired = now > current.renew_time + current.duration_seconds
            if current.holder == self.identity:
                self.api.replace(Lease(self.identity, now, self.duration_seconds, current.transitions, current.version))
                return True
            if expired or current.holder is None:
                self.api.replace(Lease(self.identity, now, self.duration_seconds, current.transitions + 1, current.version))
                return True
            return False
        except Conflict:
            return False


class KubernetesLeases:
    """LeaseApi over kubernetes.client.CoordinationV1Api."""

    def __init__(self, coordination_api, namespace: str, name: str):
        self.api, self.namespace, self.name = coordination_api, namespace, name

    def get(self) -> Lease | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        spec = obj.spec
        renew = spec.renew_time.timestamp() if spec.renew_time else 0.0
        return Lease(spec.holder_identity, renew, spec.lease_duration_seconds or 15, spec.lease_transitions or 0, obj.metadata.resource_version)

    def _body(self, lease: Lease) -> dict:
        renew = datetime.datetime.fromtimestamp(lease.renew_time, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"holderIdentity": lease.holder, "renewTime": renew, "leaseDurationSeconds": lease.duration_seconds, "leaseTransitions": lease.transitions},
        }
        if lease.version:
            body["metadata"]["resourceVersion"] = lease.version
        return body

    def create(self, lease: Lease) -> Lease:
        return self._write(lambda: self.api.create_namespaced_lease(self.namespace, self._body(lease)), lease)

    def replace(self, lease: Lease) -> Lease:
        return self._write(lambda: self.api.replace_namespaced_lease(self.name, self.namespace, self._body(lease)), lease)

    @staticmethod
    def _write(call, lease: Lease) -> Lease:
        from kubernetes.client.exceptions import ApiException

        try:
            call()
        except ApiException as error:
            if error.status == 409:
                raise Conflict() from error
            raise
        return lease
