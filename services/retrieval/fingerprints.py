"""What retrieval tells leakage about the documents it holds: content fingerprints.

The scheme is shared.fingerprint, which leakage applies to the text it scans, so the
two sides always hash the same way. Only hashes leave this service, never text;
a hash of 8 words cannot be turned back into them.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.fingerprint import fingerprints, pack
from shared.messages.leakage import FINGERPRINTS_PER_EVENT, FingerprintsChanged, FingerprintScope
from shared.messages.retrieval import Document


def document_events(
    tenant_id: str, request_id: str, documents: Sequence[Document]
) -> list[FingerprintsChanged]:
    """One event per document (more for a big one: the first replaces, the rest append)."""
    events: list[FingerprintsChanged] = []
    for doc in documents:
        hashes = fingerprints(doc.text)
        for start in range(0, max(len(hashes), 1), FINGERPRINTS_PER_EVENT):
            events.append(
                FingerprintsChanged(
                    tenant_id=tenant_id,
                    request_id=request_id,
                    scope=FingerprintScope.DOCUMENT,
                    document_id=doc.document_id,
                    fingerprints=pack(hashes[start : start + FINGERPRINTS_PER_EVENT]),
                    append=start > 0,
                )
            )
    return events


def withdrawn(tenant_id: str, request_id: str, document_id: str | None) -> FingerprintsChanged:
    """A deleted document's (or, with None, the whole collection's) fingerprints."""
    if document_id is None:
        return FingerprintsChanged(
            tenant_id=tenant_id, request_id=request_id, scope=FingerprintScope.COLLECTION
        )
    return FingerprintsChanged(
        tenant_id=tenant_id,
        request_id=request_id,
        scope=FingerprintScope.DOCUMENT,
        document_id=document_id,
    )
