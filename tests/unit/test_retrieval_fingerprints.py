"""What retrieval hands leakage: fingerprint events on ingest and delete, canaries in storage."""

from __future__ import annotations

import numpy as np
import pytest

from services.retrieval import index
from services.retrieval.fingerprints import document_events, withdrawn
from shared.canary import Canaries
from shared.fingerprint import fingerprints, unpack
from shared.messages.leakage import FINGERPRINTS_PER_EVENT, FingerprintScope
from shared.messages.retrieval import Document
from tests.unit.test_retrieval_index import EMBEDDER, SMALL, FakeVectorStore

pytestmark = pytest.mark.unit

CANARIES = Canaries(b"unit-test-secret")


def test_one_event_per_document_holding_its_fingerprints_and_no_text() -> None:
    docs = [
        Document(document_id="a", text="one two three four five six seven eight nine ten"),
        Document(document_id="b", text="short"),
    ]
    events = document_events("acme-1", "req-1", docs)
    assert [(e.document_id, e.append, e.scope) for e in events] == [
        ("a", False, FingerprintScope.DOCUMENT),
        ("b", False, FingerprintScope.DOCUMENT),
    ]
    assert np.array_equal(unpack(events[0].raw_fingerprints()), fingerprints(docs[0].text))
    assert events[1].fingerprints == ""  # too short to shingle: replaces with nothing
    assert "seven" not in events[0].model_dump_json()


def test_a_big_document_is_split_first_replacing_then_appending() -> None:
    words = " ".join(f"w{i}" for i in range(FINGERPRINTS_PER_EVENT * 3))
    events = document_events("acme-1", "req-1", [Document(document_id="big", text=words)])
    assert len(events) >= 2 and [e.append for e in events] == [False] + [True] * (len(events) - 1)
    total = np.concatenate([unpack(e.raw_fingerprints()) for e in events])
    assert np.array_equal(total, fingerprints(words))


def test_withdrawals() -> None:
    doc = withdrawn("acme-1", "r", "handbook")
    assert (doc.scope, doc.document_id, doc.fingerprints) == (
        FingerprintScope.DOCUMENT,
        "handbook",
        "",
    )
    assert withdrawn("acme-1", "r", None).scope is FingerprintScope.COLLECTION


async def test_ingest_plants_the_canary_but_embeds_the_plain_text() -> None:
    store = FakeVectorStore()
    doc = Document(document_id="wifi", text="Connect the thermostat to a 2.4 GHz network.")
    await index.ingest(store, EMBEDDER, SMALL, "acme-1", [doc], CANARIES)
    (stored,) = store.collections["acme-1"].values()
    assert stored.text == CANARIES.plant("acme-1", doc.text)
    assert np.allclose(stored.vector, EMBEDDER.embed([doc.text])[0])
    assert CANARIES.strip_own("acme-1", stored.text) == doc.text
