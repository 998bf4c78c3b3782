"""The labelled corpus: precision and recall floors per detector, and clean business text.

Measured (python -m services.leakage.quality): canary, foreign_chunk 1.0/1.0;
foreign_content 1.0/0.90; foreign_tenant 0.83/0.91; pii 1.0/0.89; secret 1.0/0.86.
The floors sit a little below, so a regression fails and small corpus edits do not.
"""

from __future__ import annotations

import json

import pytest

from services.leakage.quality import DEFAULT_DIR, DEFAULT_TENANT, build_scanner, evaluate
from shared.messages.leakage import ScanLocation, ScanText

pytestmark = pytest.mark.unit

FLOORS = {  # detector: (precision, recall)
    "canary": (1.0, 1.0),
    "foreign_chunk": (1.0, 1.0),
    "foreign_content": (0.95, 0.85),
    "foreign_tenant": (0.75, 0.85),
    "pii": (0.95, 0.8),
    "secret": (0.95, 0.8),
}


def test_precision_and_recall_floors() -> None:
    report = evaluate()
    assert report.cases >= 100
    for detector, (precision, recall) in FLOORS.items():
        score = report.scores[detector]
        assert score.positives >= 2, detector
        assert score.precision >= precision, (detector, report.false_positives)
        assert score.recall >= recall, (detector, report.misses)


def test_ordinary_business_text_is_never_flagged() -> None:
    scanner, _ = build_scanner(DEFAULT_DIR)
    cases = json.loads((DEFAULT_DIR / "corpus.json").read_text())["cases"]
    business = [c for c in cases if c["id"].startswith("biz-")]
    assert len(business) >= 20
    for case in business:
        for location in ScanLocation:
            result = scanner.scan(
                ScanText(tenant_id=DEFAULT_TENANT, location=location, text=case["text"])
            )
            assert result.findings == [], (case["id"], result.findings)
            assert result.text == case["text"]
