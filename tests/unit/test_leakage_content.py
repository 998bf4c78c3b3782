"""Content fingerprints: the shingle scheme, the owner index, and the quote detector."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from services.leakage.content import (
    NO_OWNER,
    SHARED,
    FingerprintIndex,
    ForeignContentDetector,
)
from shared.fingerprint import K, W, fingerprints, pack, shingles, unpack, winnow
from shared.messages.leakage import FingerprintsChanged, FingerprintScope, ScanLocation, ScanText

pytestmark = pytest.mark.unit

DOC = (
    "Parcels heavier than thirty kilograms are never loaded on the morning vans; they wait "
    "for the afternoon truck, which has a tail lift and two crew members. Drivers scan every "
    "parcel at the depot door and again at the customer's door, and a missing second scan "
    "opens an exception ticket automatically after ninety minutes."
)
HASHES = fingerprints(DOC)
QUOTE = "they wait for the afternoon truck, which has a tail lift and two crew members"


def scan(index: FingerprintIndex, tenant: str, text: str) -> list[tuple[str, int, int]]:
    request = ScanText(tenant_id=tenant, location=ScanLocation.RESPONSE, text=text)
    return [(h.kind, h.start, h.end) for h in ForeignContentDetector(index).detect(request)]


@pytest.fixture
def index() -> FingerprintIndex:
    built = FingerprintIndex()
    built.replace_document("fabrikam-1", "handbook", fingerprints(DOC))
    return built


def test_hashes_ignore_case_punctuation_and_spacing_and_are_stable() -> None:
    a = shingles("They WAIT for the afternoon truck,   which has a tail lift")
    b = shingles("they wait for the afternoon truck which has a tail lift!")
    assert np.array_equal(a.hashes, b.hashes) and len(a.hashes) == 11 - K + 1
    # blake2b-based, not Python's salted hash(): the same value in every process.
    assert int(shingles("one two three four five six seven eight").hashes[0]) == int(
        shingles("One two three four five six seven eight.").hashes[0]
    )
    assert len(shingles("too short to shingle").hashes) == 0


def test_winnowing_keeps_one_in_every_window() -> None:
    hashes = shingles(DOC * 3).hashes
    kept = set(winnow(hashes).tolist())
    for start in range(len(hashes) - W + 1):
        assert kept & set(hashes[start : start + W].tolist())
    assert len(kept) < 0.6 * len(set(hashes.tolist()))


def test_a_quote_of_another_tenants_document_is_found_where_it_is(
    index: FingerprintIndex,
) -> None:
    text = f"Good question. In short: {QUOTE.upper()}. Anything else?"
    hits = scan(index, "northwind-1", text)
    assert hits and all(kind == "quoted_document" for kind, _, _ in hits)
    start, end = hits[0][1], hits[-1][2]
    assert text.find("THEY") <= start and end <= text.find(". Anything")


def test_own_document_short_quotes_and_paraphrase_are_not_reported(
    index: FingerprintIndex,
) -> None:
    assert scan(index, "fabrikam-1", QUOTE) == []
    assert scan(index, "northwind-1", "they wait for the afternoon truck") == []
    assert scan(index, "northwind-1", "Heavy parcels go on the afternoon truck.") == []


def test_text_both_tenants_hold_belongs_to_neither(index: FingerprintIndex) -> None:
    index.replace_document("northwind-1", "copy", fingerprints(DOC))
    assert scan(index, "contoso-1", QUOTE) == []
    owners = index.owners(unpack(bytes(8)))
    assert owners.tolist() == [NO_OWNER]
    assert SHARED in index.owners(fingerprints(DOC)).tolist()


def test_replacing_and_withdrawing_documents(index: FingerprintIndex) -> None:
    index.replace_document("fabrikam-1", "handbook", fingerprints("entirely different " * 20))
    assert scan(index, "northwind-1", QUOTE) == []
    index.replace_document("fabrikam-1", "handbook", fingerprints(DOC))
    assert scan(index, "northwind-1", QUOTE)
    index.replace_document("fabrikam-1", "handbook", [])
    assert scan(index, "northwind-1", QUOTE) == [] and len(index) == 0


def test_events_apply_in_parts_and_collections_are_withdrawn_whole(
    index: FingerprintIndex,
) -> None:
    hashes = fingerprints(DOC)
    fresh = FingerprintIndex()
    for i, part in enumerate(np.array_split(hashes, 3)):
        fresh.apply(
            FingerprintsChanged(
                tenant_id="fabrikam-1",
                scope=FingerprintScope.DOCUMENT,
                document_id="handbook",
                fingerprints=pack(part),
                append=i > 0,
            )
        )
    assert len(fresh) == len(hashes) and scan(fresh, "northwind-1", QUOTE)
    fresh.apply(FingerprintsChanged(tenant_id="fabrikam-1", scope=FingerprintScope.COLLECTION))
    assert len(fresh) == 0 and scan(fresh, "northwind-1", QUOTE) == []


def test_event_validation() -> None:
    with pytest.raises(ValueError, match="document_id"):
        FingerprintsChanged(tenant_id="t-1", scope=FingerprintScope.DOCUMENT)
    with pytest.raises(ValueError, match="withdraws"):
        FingerprintsChanged(
            tenant_id="t-1", scope=FingerprintScope.COLLECTION, fingerprints=pack(HASHES)
        )
    with pytest.raises(ValueError, match="8-byte"):
        FingerprintsChanged(
            tenant_id="t-1", scope=FingerprintScope.DOCUMENT, document_id="d", fingerprints="AAAA"
        )
    big = np.arange(5, dtype=np.uint64) << np.uint64(60)
    assert np.array_equal(unpack(base64.b64decode(pack(big))), big)


def test_memory_is_reported(index: FingerprintIndex) -> None:
    assert index.nbytes() >= len(index) * 12


async def test_a_background_rebuild_keeps_lookups_on_the_previous_arrays() -> None:
    index = FingerprintIndex()
    index.rebuild_on_lookup = False  # as the feed sets it
    index.replace_document("fabrikam-1", "handbook", HASHES)
    assert scan(index, "northwind-1", QUOTE) == []  # not built yet: never on the scan path
    await index.refresh_in_background()
    assert scan(index, "northwind-1", QUOTE)
    index.replace_document("fabrikam-1", "handbook", [])
    assert scan(index, "northwind-1", QUOTE)  # still the last arrays built
    await index.refresh_in_background()
    assert scan(index, "northwind-1", QUOTE) == []
