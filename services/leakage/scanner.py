"""The policy: run every detector, decide each finding's action, redact, summarise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.leakage.detectors import Detection, Detector
from shared.canary import Canaries
from shared.messages.audit import DetailValue
from shared.messages.leakage import Finding, ScanLocation, ScanText, Verdict
from shared.redaction import redact

# Platform defaults. Another tenant's identity or data stops the request; a secret or
# PII is cut out and the request goes on. A detector missing here fails closed (BLOCK).
POLICY: Mapping[str, Verdict] = {
    "foreign_tenant": Verdict.BLOCK,
    "foreign_chunk": Verdict.BLOCK,
    "foreign_content": Verdict.BLOCK,
    "canary": Verdict.BLOCK,
    "secret": Verdict.REDACT,
    "pii": Verdict.REDACT,
}
# Proof of a cross-tenant read: no tenant's own policy may soften these. (A tenant may
# flag rather than block another tenant's *name*: partners on the platform mention
# each other; a chunk from another tenant's collection is never legitimate.)
FIXED: frozenset[str] = frozenset({"foreign_chunk", "canary"})
_STRENGTH = {Verdict.ALLOW: 0, Verdict.FLAG: 1, Verdict.REDACT: 2, Verdict.BLOCK: 3}

PolicySource = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class ScanResult:
    verdict: Verdict
    text: str  # redacted; empty when blocked, so blocked text cannot be forwarded by mistake
    findings: list[Finding]


def action_for(hit: Detection, overrides: Mapping[str, str]) -> Verdict:
    """The tenant's override for detector.kind, else for detector, else the default."""
    default = POLICY.get(hit.detector, Verdict.BLOCK)
    if hit.detector in FIXED:
        return default
    chosen = overrides.get(f"{hit.detector}.{hit.kind}") or overrides.get(hit.detector)
    try:
        return Verdict(chosen) if chosen and chosen != Verdict.ALLOW else default
    except ValueError:
        return default  # promptconfig validates the values; never fail open on a bad one


class Scanner:
    def __init__(
        self,
        detectors: Sequence[Detector],
        policies: PolicySource | None = None,
        canaries: Canaries | None = None,
    ) -> None:
        self._detectors = list(detectors)
        self._policies = policies or (lambda _tenant_id: {})
        self._canaries = canaries

    @property
    def detectors(self) -> list[Detector]:
        return list(self._detectors)

    def scan(self, request: ScanText) -> ScanResult:
        """Offsets in findings refer to the text as scanned; for a response that is the
        text after the tenant's own canaries were cut out (what the client would get)."""
        if self._canaries is not None and request.location is ScanLocation.RESPONSE:
            stripped = self._canaries.strip_own(request.tenant_id, request.text)
            if stripped != request.text:
                request = request.model_copy(update={"text": stripped})
        overrides = self._policies(request.tenant_id)
        findings = sorted(
            (
                Finding(
                    detector=hit.detector,
                    kind=hit.kind,
                    location=hit.location,
                    start=hit.start,
                    end=hit.end,
                    action=action_for(hit, overrides),
                )
                for detector in self._detectors
                for hit in detector.detect(request)
            ),
            key=lambda f: (f.start, f.end, f.detector),
        )
        verdict = max(
            (f.action for f in findings), key=_STRENGTH.__getitem__, default=Verdict.ALLOW
        )
        text = "" if verdict is Verdict.BLOCK else redact(request.text, findings)
        return ScanResult(verdict=verdict, text=text, findings=findings)


def summary(request: ScanText, result: ScanResult) -> dict[str, DetailValue]:
    """Audit details: counts per detector/kind and the verdict, never the matched text."""
    details: dict[str, DetailValue] = {
        "location": request.location.value,
        "verdict": result.verdict.value,
        "findings": len(result.findings),
        "text_length": len(request.text),
    }
    counts = Counter(f"{f.detector}.{f.kind}" for f in result.findings)
    details.update(sorted(counts.items()))
    return details


def finding_details(finding: Finding) -> dict[str, DetailValue]:
    """One finding's audit details: where and what kind, never the text."""
    return {
        "detector": finding.detector,
        "kind": finding.kind,
        "location": finding.location.value,
        "start": finding.start,
        "end": finding.end,
        "action": finding.action.value,
    }
