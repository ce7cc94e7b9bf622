"""Bounds that keep every number and name inside what Kubernetes, Envoy and Azure accept.

A value past these is a config error naming the key, never an overflow, a rejected manifest or an
Envoy config that takes every service down with it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

# Kubernetes int32 fields (replicas, probe seconds and thresholds, ports); Envoy's uint32 thresholds and
# millisecond durations accept every value up to it as well.
INT32_MAX = 2**31 - 1

# Per-replica CPU and memory: far above any Azure VM size (the largest M-series offer 1,792 vCPUs and
# 32 TiB), so the bound only stops a typo such as 1e308 from reaching a manifest as an overflow.
MAX_CPU_CORES = 2048.0
MAX_MEMORY_GB = 32768.0
MIN_CPU_CORES = 0.001  # one millicore: the smallest CPU quantity Kubernetes represents
MIN_MEMORY_GB = 0.001  # about one MiB

# Namespaces a model service may not use: Kubernetes' own (https://kubernetes.io/docs/concepts/overview/
# working-with-objects/namespaces/#initial-namespaces; `kube-` is reserved for the system) and the
# router's, where model workloads would get the router's RBAC and NetworkPolicies.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SYSTEM_NAMESPACE_PREFIX = "kube-"
ROUTER_NAMESPACE = "aks-inference"  # router.discovery.ROUTER_NAMESPACE (a test keeps the two equal)

# Keys are bearer secrets: a user-supplied one must carry at least this much (Shannon) entropy.
MIN_KEY_ENTROPY_BITS = 64


def reserved_namespace_problem(namespace: str) -> str | None:
    if namespace in SYSTEM_NAMESPACES or namespace.startswith(SYSTEM_NAMESPACE_PREFIX):
        return f"is reserved for Kubernetes ({', '.join(SYSTEM_NAMESPACES)}, kube-*); allowed: a namespace of your own, e.g. models"
    if namespace == ROUTER_NAMESPACE:
        return "is the router's namespace; allowed: a namespace of your own, e.g. models"
    return None


def key_entropy_bits(key: str) -> float:
    """Shannon entropy of the key's characters times its length: 0 for 'aaaa…', ~190 for a 32-char random token."""
    counts = Counter(key)
    return -sum(n * math.log2(n / len(key)) for n in counts.values())


# Deeper than any real config or v1 file; the JSON parser and pydantic would overflow the stack near 1,000.
MAX_NESTING = 64
TOO_DEEP = object()  # what a parser hands on for a document it could not even read for nesting


def too_deep(value: Any) -> bool:
    """Whether `value` nests containers deeper than MAX_NESTING (iterative: nothing to overflow)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if item is TOO_DEEP or depth > MAX_NESTING:
            return True
        if isinstance(item, Mapping):
            stack += [(child, depth + 1) for child in item.values()]
        elif isinstance(item, (list, tuple)):
            stack += [(child, depth + 1) for child in item]
    return False


# An Azure/Entra object or application id, in either case.
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_guid(value: str) -> bool:
    return bool(_GUID.fullmatch(value))
