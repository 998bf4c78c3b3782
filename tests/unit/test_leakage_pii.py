"""PII and high-entropy secrets: what is found, where, and how it is redacted."""

from __future__ import annotations

import pytest

from services.leakage.app import default_detectors
from services.leakage.directory import TenantDirectory
from services.leakage.entropy import looks_random
from services.leakage.pii import PiiDetector, is_card, is_email, is_phone
from services.leakage.scanner import Scanner
from services.leakage.secret_patterns import SecretDetector
from shared.messages.leakage import ScanLocation, ScanText, Verdict

pytestmark = pytest.mark.unit


def request(text: str) -> ScanText:
    return ScanText(tenant_id="northwind-1", location=ScanLocation.RESPONSE, text=text)


def found(text: str) -> list[tuple[str, str]]:
    return [(h.kind, text[h.start : h.end]) for h in PiiDetector().detect(request(text))]


def test_each_kind_with_exact_spans() -> None:
    text = (
        "Mail ana@shop.example, call +44 113 496 0731, pay GB82 WEST 1234 5698 7654 32 "
        "or card 4539 1488 0343 6467."
    )
    assert found(text) == [
        ("email", "ana@shop.example"),
        ("phone", "+44 113 496 0731"),
        ("iban", "GB82 WEST 1234 5698 7654 32"),
        ("card", "4539 1488 0343 6467"),
    ]


def test_checksums_and_formats_decide() -> None:
    assert is_card("4111-1111-1111-1111") and not is_card("4111-1111-1111-1112")
    assert not is_card("1234 5678 9012 3452")  # Luhn-valid, but no card network's prefix
    assert is_email("j.okafor+orders@mailbox.org") and not is_email("logo@2x.png")
    assert found("IBAN GB82 WEST 1234 5698 7654 33") == []  # wrong mod-97 check digits
    assert is_phone("(415) 555-0132", "") and not is_phone("4155550132", "batch ")
    assert is_phone("4155550132", "phone: ") and not is_phone("2026-05-31", "call on ")


def test_business_numbers_are_not_pii() -> None:
    text = (
        "Invoice INV-2026-004417 totals $1,250,000.00, due 2026-05-31; SKU 40021-118; "
        "ISBN 978-0-306-40615-7; version 2.14.3; 12,400 copies; tracking 1Z999AA10123456784."
    )
    assert found(text) == []


def test_high_entropy_tokens_but_not_ids_hashes_or_names() -> None:
    assert looks_random("7Hq2Lz9XkP4mWv8Rt3Nb6Jc1Ys5Fd0Ga")
    for benign in (
        "550e8400-e29b-41d4-a716-446655440000",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "NorthwindOrderReconciliationServiceV2Impl",
        "NW-2026-0417-EMEA-RETURNS-BATCH-0093",
    ):
        assert not looks_random(benign), benign
    text = "signing key 7Hq2Lz9XkP4mWv8Rt3Nb6Jc1Ys5Fd0Ga, url https://x.example/a/7Hq2Lz9XkP4mWv8Rt3Nb6Jc1Ys5Fd0Ga"
    hits = SecretDetector().detect(request(text))
    assert [(h.kind, h.start) for h in hits] == [("high_entropy_token", 12)]


def test_pii_is_redacted_with_typed_placeholders() -> None:
    scanner = Scanner(default_detectors(TenantDirectory()))
    result = scanner.scan(request("Reach ana@shop.example or +44 113 496 0731 today."))
    assert result.verdict is Verdict.REDACT
    assert result.text == "Reach [EMAIL] or [PHONE] today."
