"""Deterministic Azure resource names (no provider autonaming: previews must not churn)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PURPOSE_TAG = "aks-inference/purpose"  # on every Azure resource and model workload; policies read it


@dataclass(frozen=True)
class Names:
    project: str
    stack: str
    location: str

    @property
    def base(self) -> str:
        return f"aksinf-{self.stack}"

    def of(self, kind: str) -> str:
        return f"{kind}-{self.base}"

    @property
    def registry(self) -> str:
        """ACR names are global, 5-50 alphanumerics: stack plus a stable hash of project/stack/region."""
        digest = hashlib.sha256(f"{self.project}/{self.stack}/{self.location}".encode()).hexdigest()[:8]
        stem = "".join(ch for ch in f"aksinf{self.stack}" if ch.isalnum()).lower()[:40]
        return f"{stem}{digest}"

    @property
    def model_data_account(self) -> str:
        """Storage account names are global, 3-24 lowercase alphanumerics: like `registry`, own salt."""
        digest = hashlib.sha256(f"{self.project}/{self.stack}/{self.location}/modeldata".encode()).hexdigest()[:8]
        stem = "".join(ch for ch in f"md{self.stack}" if ch.isalnum()).lower()[:16]
        return f"{stem}{digest}"

    def tags(self, purpose: str) -> dict[str, str]:
        """Tags on every Azure resource; policies read the purpose from them."""
        return {PURPOSE_TAG: purpose, "aks-inference/stack": self.stack, "managed-by": "pulumi"}
