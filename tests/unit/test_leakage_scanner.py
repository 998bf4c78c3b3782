"""leakage policy: verdicts, redaction, and what findings and audit details hold."""

from __future__ import annotations

import pytest

from services.leakage.app import default_detectors
from services.leakage.directory import TenantDirectory, TenantIdentity
from services.leakage.scanner import Scanner, redact, summary
from shared.messages.leakage import Finding, ScanLocation, ScanText, Verdict
from shared.messages.retrieval import Chunk

pytestmark = pytest.mark.unit

ACME = TenantIdentity("acme-7f3a", "Acme Corp", ("Acme",), ("acme.com",))
GLOBEX = TenantIdentity("globex-19c2", "Globex", (), ("globex.io",))
AWS = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def scanner() -> Scanner:
    return Scanner(default_detectors(TenantDirectory([ACME, GLOBEX])))


def scan_text(text: str, **extra: object) -> ScanText:
    return ScanText(tenant_id=ACME.tenant_id, location=ScanLocation.PROMPT, text=text, **extra)


def test_ordinary_business_text_is_allowed_unchanged(scanner: Scanner) -> None:
    text = (
        "Acme Corp's Q3 revenue grew 12% to $4.2M. The sales team closed 31 deals, and "
        "support resolved 98% of tickets within a day. Next steps: hire two engineers."
    )
    result = scanner.scan(scan_text(text))
    assert result.verdict is Verdict.ALLOW
    assert result.text == text and result.findings == []


def test_secret_is_redacted_and_surrounding_text_kept(scanner: Scanner) -> None:
    text = f"Use key {AWS} for the upload, and password = 'Tr0ub4dor&3' for the db."
    result = scanner.scan(scan_text(text))
    assert result.verdict is Verdict.REDACT
    assert result.text == (
        "Use key [SECRET:aws_access_key] for the upload, and "
        "password = '[SECRET:password]' for the db."
    )
    assert [(f.kind, f.action) for f in result.findings] == [
        ("aws_access_key", Verdict.REDACT),
        ("password", Verdict.REDACT),
    ]
    assert text[result.findings[0].start : result.findings[0].end] == AWS


def test_another_tenants_name_blocks_and_the_strongest_action_wins(scanner: Scanner) -> None:
    result = scanner.scan(scan_text(f"Globex uses {AWS}"))
    assert result.verdict is Verdict.BLOCK
    assert result.text == ""  # blocked text is never handed back to be forwarded
    assert {(f.detector, f.action) for f in result.findings} == {
        ("foreign_tenant", Verdict.BLOCK),
        ("secret", Verdict.REDACT),
    }


def test_foreign_chunk_blocks(scanner: Scanner) -> None:
    chunk = Chunk(tenant_id=GLOBEX.tenant_id, document_id="d", chunk_id="c", text="plain words")
    result = scanner.scan(scan_text("plain words", context=[chunk]))
    assert result.verdict is Verdict.BLOCK
    assert [(f.detector, f.location) for f in result.findings] == [
        ("foreign_chunk", ScanLocation.CONTEXT)
    ]


def test_findings_and_audit_details_never_hold_the_matched_text(scanner: Scanner) -> None:
    request = scan_text(f"Globex key {AWS}")
    result = scanner.scan(request)
    for finding in result.findings:
        assert AWS not in finding.model_dump_json() and "Globex" not in finding.model_dump_json()
    details = summary(request, result)
    assert details["verdict"] == "block" and details["findings"] == 2
    assert details["foreign_tenant.tenant_name"] == 1 and details["secret.aws_access_key"] == 1
    assert all(AWS not in str(v) and "Globex" not in str(v) for v in details.values())


def test_unknown_detector_fails_closed() -> None:
    class Canary:
        name = "canary"

        def detect(self, request: ScanText) -> list:  # type: ignore[type-arg]
            from services.leakage.detectors import Detection

            return [Detection("canary", "token", request.location, 0, 1)]

    assert Scanner([Canary()]).scan(scan_text("x")).verdict is Verdict.BLOCK


def test_overlapping_redactions_merge() -> None:
    def finding(start: int, end: int) -> Finding:
        return Finding(
            detector="secret",
            kind="k",
            location=ScanLocation.PROMPT,
            start=start,
            end=end,
            action=Verdict.REDACT,
        )

    assert redact("0123456789", [finding(2, 5), finding(4, 8)]) == "01[SECRET:k]89"
    assert redact("0123456789", [finding(2, 8), finding(3, 4)]) == "01[SECRET:k]89"
