"""Canary tokens and per-tenant policy: flag, redact, block, and what cannot be softened."""

from __future__ import annotations

import pytest

from services.leakage.app import default_detectors
from services.leakage.canary import CanaryDetector
from services.leakage.content import FingerprintIndex
from services.leakage.directory import TenantDirectory, TenantIdentity
from services.leakage.scanner import Scanner
from shared.canary import PATTERN, Canaries
from shared.messages.leakage import ScanLocation, ScanText, Verdict
from shared.messages.retrieval import Chunk

pytestmark = pytest.mark.unit

CANARIES = Canaries(b"unit-test-secret")
ACME = "acme-7f3a"
GLOBEX = "globex-19c2"


def text_scan(
    text: str, location: ScanLocation = ScanLocation.RESPONSE, **extra: object
) -> ScanText:
    return ScanText(tenant_id=ACME, location=location, text=text, **extra)


def scanner(policy: dict[str, str] | None = None) -> Scanner:
    directory = TenantDirectory(
        [
            TenantIdentity(ACME, "Acme Corp", policy=tuple((policy or {}).items())),
            TenantIdentity(GLOBEX, "Globex"),
        ]
    )
    detectors = default_detectors(directory, FingerprintIndex(), CANARIES)
    return Scanner(detectors, policies=directory.policy, canaries=CANARIES)


def test_tokens_are_per_tenant_per_secret_and_well_formed() -> None:
    token = CANARIES.token(ACME)
    assert PATTERN.fullmatch(token) and token == Canaries(b"unit-test-secret").token(ACME)
    assert token != CANARIES.token(GLOBEX) and token != Canaries(b"other").token(ACME)
    with pytest.raises(ValueError):
        Canaries(b"")


def test_planted_canary_travels_and_is_reported_in_another_tenants_traffic() -> None:
    stored = CANARIES.plant(GLOBEX, "Globex ships on Tuesdays.")
    hits = CanaryDetector(CANARIES).detect(text_scan(f"They said: {stored}"))
    assert [h.kind for h in hits] == ["foreign_canary"]
    result = scanner().scan(text_scan(f"Shipping is on Tuesdays. {CANARIES.token(GLOBEX)}"))
    assert result.verdict is Verdict.BLOCK


def test_own_canary_is_fine_in_a_prompt_and_cut_from_a_response() -> None:
    stored = CANARIES.plant(ACME, "Returns within thirty days.")
    prompt = scanner().scan(text_scan(stored, ScanLocation.PROMPT))
    assert prompt.verdict is Verdict.ALLOW and prompt.text == stored
    response = scanner().scan(text_scan(f"- {stored} [source: returns]"))
    assert response.verdict is Verdict.ALLOW and response.findings == []
    assert CANARIES.token(ACME) not in response.text
    assert response.text == "- Returns within thirty days. [source: returns]"


def test_tenant_policy_can_flag_or_redact_per_detector_and_kind() -> None:
    text = "Globex asked; mail ana@shop.example."
    assert scanner().scan(text_scan(text)).verdict is Verdict.BLOCK
    relaxed = scanner({"foreign_tenant": "flag", "pii.email": "flag"}).scan(text_scan(text))
    assert relaxed.verdict is Verdict.FLAG and relaxed.text == text
    assert {f.action for f in relaxed.findings} == {Verdict.FLAG}
    redacting = scanner({"foreign_tenant": "redact"}).scan(text_scan(text))
    assert redacting.text == "[FOREIGN_TENANT:tenant_name] asked; mail [EMAIL]."
    strict = scanner({"pii": "block"}).scan(text_scan("mail ana@shop.example"))
    assert strict.verdict is Verdict.BLOCK


def test_foreign_chunks_and_canaries_always_block_whatever_the_policy() -> None:
    relaxed = scanner({"foreign_chunk": "flag", "canary": "flag"})
    chunk = Chunk(tenant_id=GLOBEX, document_id="d", chunk_id="c", text="words")
    assert relaxed.scan(text_scan("words", context=[chunk])).verdict is Verdict.BLOCK
    leaked = text_scan(f"x {CANARIES.token(GLOBEX)}")
    assert relaxed.scan(leaked).verdict is Verdict.BLOCK


def test_a_bad_policy_value_falls_back_to_the_default() -> None:
    assert scanner({"foreign_tenant": "allow-it"}).scan(text_scan("Globex")).verdict is (
        Verdict.BLOCK
    )
