"""Applying a scan's REDACT findings to text: the one rule, shared by leakage (which
redacts what it scans) and the gateway (which releases a streamed answer piece by piece
and redacts each piece with the findings of the scan that cleared it)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.messages.leakage import Finding, Verdict

# Typed placeholders readers understand; other findings get [DETECTOR:kind].
_PLACEHOLDERS = {"pii": "[{kind}]", "foreign_content": "[FOREIGN_CONTENT]"}


def placeholder(finding: Finding) -> str:
    template = _PLACEHOLDERS.get(finding.detector, "[{detector}:{kind_lower}]")
    return template.format(
        kind=finding.kind.upper(), detector=finding.detector.upper(), kind_lower=finding.kind
    )


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
