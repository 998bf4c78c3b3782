"""Detectors: each looks at one scan request and returns Hits (where, what kind).

A detector never decides what to do about a hit; the policy in `scanner` does. The
others (content fingerprints in `content`, canaries in `canary`, secrets in
`secret_patterns`, PII in `pii`) implement the same protocol; `app.default_detectors`
lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.leakage.directory import TenantDirectory
from shared.messages.leakage import ScanLocation, ScanText


@dataclass(frozen=True)
class Detection:
    detector: str
    kind: str
    location: ScanLocation
    start: int
    end: int


class Detector(Protocol):
    name: str

    def detect(self, request: ScanText) -> list[Detection]: ...


class ForeignTenantDetector:
    """Another tenant's id, name, alias or domain in the text. The scanning tenant's own
    identifiers are fine, including one it shares with another tenant."""

    name = "foreign_tenant"

    def __init__(self, directory: TenantDirectory) -> None:
        self._directory = directory

    def detect(self, request: ScanText) -> list[Detection]:
        hits = []
        for match in self._directory.matcher().find(request.text):
            if any(owner.tenant_id == request.tenant_id for owner in match.owners):
                continue
            hits.append(
                Detection(
                    self.name, match.owners[0].kind.value, request.location, match.start, match.end
                )
            )
        return hits


class ForeignChunkDetector:
    """A retrieved chunk stored under another tenant: retrieval must never return one,
    so this is a cross-tenant read caught at the last moment."""

    name = "foreign_chunk"

    def detect(self, request: ScanText) -> list[Detection]:
        hits = []
        for chunk in request.context:
            if chunk.tenant_id == request.tenant_id:
                continue
            # Point at the chunk's text where the caller pasted it into the scanned text.
            start = request.text.find(chunk.text) if chunk.text else -1
            span = (start, start + len(chunk.text)) if start >= 0 else (0, 0)
            hits.append(Detection(self.name, "chunk_tenant_mismatch", ScanLocation.CONTEXT, *span))
        return hits
