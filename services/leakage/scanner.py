"""The policy: run every detector, decide each finding's action, redact, summarise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.leakage.detectors import Detector
from shared.messages.audit import DetailValue
from shared.messages.leakage import Finding, ScanText, Verdict

# Another tenant's identity or data stops the request; a secret is cut out and the
# request goes on. A detector missing from the policy fails closed (BLOCK).
POLICY: Mapping[str, Verdict] = {
    "foreign_tenant": Verdict.BLOCK,
    "foreign_chunk": Verdict.BLOCK,
    "secret": Verdict.REDACT,
}
_STRENGTH = {Verdict.ALLOW: 0, Verdict.REDACT: 1, Verdict.BLOCK: 2}


@dataclass(frozen=True)
class ScanResult:
    verdict: Verdict
    text: str  # redacted; empty when blocked, so blocked text cannot be forwarded by mistake
    findings: list[Finding]


def placeholder(finding: Finding) -> str:
    return f"[{finding.detector.upper()}:{finding.kind}]"


def redact(text: str, findings: Sequence[Finding]) -> str:
    """Replace every REDACT span with its typed placeholder; overlapping spans merge."""
    pieces: list[str] = []
    cursor = 0
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.action is not Verdict.REDACT or finding.end <= finding.start:
            continue
        if finding.start < cursor:
            cursor = max(cursor, finding.end)  # already covered by the previous placeholder
            continue
        pieces += [text[cursor : finding.start], placeholder(finding)]
        cursor = finding.end
    pieces.append(text[cursor:])
    return "".join(pieces)


class Scanner:
    def __init__(
        self, detectors: Sequence[Detector], policy: Mapping[str, Verdict] = POLICY
    ) -> None:
        self._detectors = list(detectors)
        self._policy = policy

    def scan(self, request: ScanText) -> ScanResult:
        findings = sorted(
            (
                Finding(
                    detector=hit.detector,
                    kind=hit.kind,
                    location=hit.location,
                    start=hit.start,
                    end=hit.end,
                    action=self._policy.get(hit.detector, Verdict.BLOCK),
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
