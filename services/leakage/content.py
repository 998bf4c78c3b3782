"""Other tenants' content: which tenant's documents each stored fingerprint came from.

The index is two parallel numpy arrays, sorted fingerprints and their owner (a small
int), so a million fingerprints cost 12 MB and a look-up is one `searchsorted`. A
fingerprint held by two or more tenants (a public text both ingested) belongs to no
one in particular and is never reported. Per-document arrays are kept as well, since
removing a document means knowing its fingerprints.

Changes are applied to the per-document arrays at once; the sorted arrays are rebuilt
once per burst of changes. In the service the feed rebuilds them on a worker thread
(`refresh_in_background`: ~0.2 s for a million fingerprints), and scans meanwhile use
the previous arrays, so an ingest never stalls a scan; anywhere else (tests, tools) the
first look-up after a change rebuilds them in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from services.leakage.detectors import Detection
from shared.fingerprint import Hashes, shingles, unpack
from shared.messages.leakage import FingerprintsChanged, FingerprintScope, ScanText

NO_OWNER = -1
SHARED = -2
# Matching fingerprints from one other tenant needed before a text counts as quoting it.
# With K=8 and W=4 any shared run of 19+ words is guaranteed to give 3.
MIN_MATCHES = 3

Owners = npt.NDArray[np.int32]


class FingerprintIndex:
    def __init__(self) -> None:
        self._tenant_ids: list[str] = []
        self._tenant_index: dict[str, int] = {}
        self._documents: dict[tuple[int, str], Hashes] = {}
        self._keys: Hashes = np.zeros(0, dtype=np.uint64)
        self._owners: Owners = np.zeros(0, dtype=np.int32)
        self._dirty = False
        self._version = 0  # bumped by every change; a rebuild of an older one is stale
        self._building = False
        # False once a feed rebuilds in the background: look-ups then never rebuild
        # (not even between the events of a burst), they use the last arrays built.
        self.rebuild_on_lookup = True

    def __len__(self) -> int:
        return sum(len(fps) for fps in self._documents.values())

    def _tenant(self, tenant_id: str) -> int:
        index = self._tenant_index.get(tenant_id)
        if index is None:
            index = self._tenant_index[tenant_id] = len(self._tenant_ids)
            self._tenant_ids.append(tenant_id)
        return index

    def tenant_of(self, owner: int) -> str:
        return self._tenant_ids[owner]

    def replace_document(
        self, tenant_id: str, document_id: str, fps: Hashes | Iterable[int], append: bool = False
    ) -> None:
        """The document's fingerprints are now exactly `fps` (none: it was removed), or,
        with `append`, its earlier ones plus `fps`."""
        key = (self._tenant(tenant_id), document_id)
        array = fps if isinstance(fps, np.ndarray) else np.fromiter(fps, dtype=np.uint64)
        if append and key in self._documents:
            array = np.concatenate([self._documents[key], array])
        array = np.unique(array.astype(np.uint64, copy=False))
        if len(array):
            self._documents[key] = array
        elif self._documents.pop(key, None) is None:
            return
        self._changed()

    def remove_tenant(self, tenant_id: str) -> None:
        owner = self._tenant_index.get(tenant_id)
        doomed = [key for key in self._documents if key[0] == owner]
        for key in doomed:
            del self._documents[key]
        if doomed:
            self._changed()

    def clear(self) -> None:
        self._documents.clear()
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
        self._version += 1

    def apply(self, event: FingerprintsChanged) -> None:
        if event.scope is FingerprintScope.COLLECTION:
            self.remove_tenant(event.tenant_id)
        else:
            hashes = unpack(event.raw_fingerprints())
            self.replace_document(event.tenant_id, event.document_id, hashes, event.append)

    def nbytes(self) -> int:
        """Memory held by the arrays (the Python dict around them adds ~100 B/document)."""
        self._refresh()
        arrays = sum(a.nbytes for a in self._documents.values())
        return int(self._keys.nbytes + self._owners.nbytes + arrays)

    def owners(self, hashes: Hashes) -> Owners:
        """Owner of each hash: a tenant index, NO_OWNER or SHARED."""
        if self.rebuild_on_lookup and not self._building:
            self._refresh()
        if not len(self._keys) or not len(hashes):
            return np.full(len(hashes), NO_OWNER, dtype=np.int32)
        at = np.searchsorted(self._keys, hashes)
        at[at == len(self._keys)] = 0
        found = self._keys[at] == hashes
        return np.where(found, self._owners[at], NO_OWNER).astype(np.int32)

    def _refresh(self) -> None:
        if self._dirty:
            self._keys, self._owners = _build(list(self._documents.items()))
            self._dirty = False

    async def refresh_in_background(self) -> None:
        """Rebuild the sorted arrays on a worker thread (numpy releases the GIL while it
        sorts); look-ups meanwhile use the previous arrays."""
        if self._building:
            return
        self._building = True
        try:
            while self._dirty:
                version = self._version
                # Per-document arrays are never modified in place, so a shallow copy is
                # a consistent snapshot for the thread.
                built = await asyncio.to_thread(_build, list(self._documents.items()))
                if version == self._version:
                    self._keys, self._owners = built
                    self._dirty = False
        finally:
            self._building = False


def _build(documents: Sequence[tuple[tuple[int, str], Hashes]]) -> tuple[Hashes, Owners]:
    """Sorted distinct fingerprints and the owner of each (SHARED if several tenants)."""
    if not documents:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32)
    keys = np.concatenate([array for _, array in documents])
    owners = np.repeat(
        np.fromiter((owner for (owner, _), _ in documents), dtype=np.int32, count=len(documents)),
        [len(array) for _, array in documents],
    )
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    low = np.minimum.reduceat(owners, starts)
    high = np.maximum.reduceat(owners, starts)
    return keys[starts], np.where(low == high, low, SHARED).astype(np.int32)


class ForeignContentDetector:
    """Text quoting a document another tenant ingested, with or without its name."""

    name = "foreign_content"

    def __init__(self, index: FingerprintIndex, min_matches: int = MIN_MATCHES) -> None:
        self._index = index
        self._min_matches = min_matches

    def detect(self, request: ScanText) -> list[Detection]:
        found = shingles(request.text)
        owners = self._index.owners(found.hashes)
        foreign = owners >= 0
        if not foreign.any():
            return []
        hits: list[Detection] = []
        for owner in np.unique(owners[foreign]):
            if self._index.tenant_of(int(owner)) == request.tenant_id:
                continue
            mine = owners == owner
            if len(np.unique(found.hashes[mine])) < self._min_matches:
                continue
            for start, end in _merged(found.starts[mine], found.ends[mine]):
                hits.append(Detection(self.name, "quoted_document", request.location, start, end))
        return hits


def _merged(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Overlapping shingle spans joined into one span per quoted passage."""
    spans: list[tuple[int, int]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans
