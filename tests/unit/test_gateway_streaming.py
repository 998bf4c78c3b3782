"""The stream guard: nothing unscanned goes out, and no finding is split across what
went out and what did not, wherever the model's deltas happen to break."""

from __future__ import annotations

import re

import pytest

from services.gateway.pipeline import Refused
from services.gateway.streaming import StreamGuard
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.leakage import Finding, ScanLocation, TextScanned, Verdict
from shared.redaction import redact

pytestmark = pytest.mark.unit

EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")
RIVAL = "Beta Bakery"


class FakeScanner:
    """Emails are redacted, the rival tenant's name blocks; records every text scanned."""

    def __init__(self) -> None:
        self.scanned: list[str] = []

    async def __call__(self, text: str) -> TextScanned:
        self.scanned.append(text)
        findings = [
            Finding(
                detector="pii",
                kind="email",
                location=ScanLocation.RESPONSE,
                start=m.start(),
                end=m.end(),
                action=Verdict.REDACT,
            )
            for m in EMAIL.finditer(text)
        ]
        if RIVAL in text:
            i = text.index(RIVAL)
            findings.append(
                Finding(
                    detector="foreign_tenant",
                    kind="tenant_name",
                    location=ScanLocation.RESPONSE,
                    start=i,
                    end=i + len(RIVAL),
                    action=Verdict.BLOCK,
                )
            )
        if any(f.action is Verdict.BLOCK for f in findings):
            raise Refused(ErrorInfo(code=ErrorCode.LEAKAGE_BLOCKED, message="blocked"))
        return TextScanned(
            tenant_id="acme",
            request_id="r1",
            verdict=Verdict.REDACT if findings else Verdict.ALLOW,
            text=redact(text, findings),
            findings=findings,
        )


def Refused_for(findings: list[Finding]) -> Refused:
    from shared.messages.base import ErrorInfo

    return Refused(ErrorInfo(code=ErrorCode.LEAKAGE_BLOCKED, message="blocked"))


ANSWER = (
    "Our refund window is 45 days from delivery. For anything else, please write to "
    "jane.doe@example.com and mention your order number; we answer within a day, "
    "and a second contact is ops.team@example.org for urgent matters only. Thanks!"
)


@pytest.mark.parametrize("size", [1, 3, 7, 16, 40, 500])
async def test_streamed_text_equals_the_scanned_whole_for_any_delta_size(size: int) -> None:
    scanner = FakeScanner()
    guard = StreamGuard(scanner, hold=32, step=8)
    out = []
    for i in range(0, len(ANSWER), size):
        out.append(await guard.feed(ANSWER[i : i + size]))
        # Nothing that went out holds an email or a piece of one.
        so_far = "".join(out)
        assert "jane.doe" not in so_far and "@example" not in so_far
    out.append(await guard.finish())
    streamed = "".join(out)
    whole = await FakeScanner()(ANSWER)
    assert streamed == whole.text
    assert streamed.count("[EMAIL]") == 2
    # It really streamed: text went out before the model finished.
    if size < len(ANSWER):
        assert sum(1 for piece in out[:-1] if piece) >= 2


async def test_text_is_held_back_until_scanned() -> None:
    guard = StreamGuard(FakeScanner(), hold=32, step=8)
    assert await guard.feed("x" * 39) == ""  # under hold + step: nothing scanned yet
    released = await guard.feed("y")
    assert released == "x" * 8  # all but the 32 held back
    assert guard.released == 8


async def test_a_block_mid_stream_stops_before_the_forbidden_text() -> None:
    text = "All good so far, the answer is long enough to stream. Ask " + RIVAL + " too."
    guard = StreamGuard(FakeScanner(), hold=32, step=8)
    out = ""
    with pytest.raises(Refused) as refused:
        for ch in text:
            out += await guard.feed(ch)
        out += await guard.finish()
    assert refused.value.info.code is ErrorCode.LEAKAGE_BLOCKED
    assert "Beta" not in out and out and text.startswith(out)


async def test_scans_cover_only_new_text_and_their_context() -> None:
    scanner = FakeScanner()
    guard = StreamGuard(scanner, hold=32, step=8)
    long = "word " * 400
    for i in range(0, len(long), 10):
        await guard.feed(long[i : i + 10])
    await guard.finish()
    # Each scan sees at most the unreleased text plus `hold` characters before it.
    assert max(len(t) for t in scanner.scanned) <= 32 + 32 + 8 + 10
