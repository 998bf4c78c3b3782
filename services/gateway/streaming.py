"""A streamed request: the model's text reaches the client as it is produced, and no
character reaches it before the leakage scan has passed it.

The guard holds back the last `hold` characters of what the model has produced so far.
Each time `step` more have arrived, it scans the unreleased text (with `hold`
characters already released before it as context) and releases everything but the
held-back tail, with the scan's redactions applied. A finding is never cut in two: the
release stops where a redacted span starts. A BLOCK ends the stream with an error; the
model call is stopped, and what it had used is charged (outcome partial).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from services.gateway.pipeline import (
    Outcome,
    Refused,
    Trace,
    _checked,
    _scan,
    _settle,
    admit,
    failed,
)
from services.gateway.ports import ModelCall, Ports
from services.gateway.refusals import RecentRefusals
from services.gateway.settings import GatewaySettings
from shared import subjects
from shared.bus import ServiceCallError
from shared.logging import get_logger
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import (
    CancelCompletion,
    CompletionDelta,
    CompletionPublished,
    CreateCompletion,
    Usage,
)
from shared.messages.leakage import Finding, ScanLocation, ScanText, TextScanned, Verdict
from shared.messages.llm import CancelModelCall
from shared.messages.metering import CallOutcome
from shared.redaction import redact

log = get_logger("tenantry.gateway")

Send = Callable[[str], Awaitable[None]]
Scan = Callable[[str], Awaitable[TextScanned]]


class StreamGuard:
    def __init__(self, scan: Scan, hold: int, step: int) -> None:
        self._scan = scan
        self._hold = hold
        self._step = step
        self.raw = ""  # everything the model produced
        self.released = 0  # how much of `raw` has gone out (before redaction)
        self.findings: list[Finding] = []  # applied to what went out, offsets in `raw`

    async def feed(self, text: str) -> str:
        """Text that may go out now (possibly empty)."""
        self.raw += text
        if len(self.raw) - self.released < self._hold + self._step:
            return ""
        return await self._release(len(self.raw) - self._hold)

    async def finish(self) -> str:
        """The rest, once the model is done."""
        return await self._release(len(self.raw))

    async def _release(self, boundary: int) -> str:
        start = max(0, self.released - self._hold)
        scanned = await self._scan(self.raw[start:])  # raises Refused on BLOCK
        found = [
            f.model_copy(update={"start": f.start + start, "end": f.end + start})
            for f in scanned.findings
        ]
        for f in found:
            if f.action is Verdict.REDACT and f.start < self.released < f.end:
                # Only possible for a span longer than the hold-back: it began in text
                # already sent. Stop rather than send the rest of it.
                raise Refused(
                    ErrorInfo(
                        code=ErrorCode.LEAKAGE_BLOCKED,
                        message=f"blocked by leakage scanning of the response: "
                        f"{f.detector}/{f.kind} (found mid-stream)",
                    )
                )
            if f.action is Verdict.REDACT and f.start < boundary < f.end:
                boundary = f.start  # never release part of a span to be redacted
        mine = [
            f.model_copy(update={"start": f.start - self.released, "end": f.end - self.released})
            for f in found
            if f.start >= self.released and f.end <= boundary
        ]
        out = redact(self.raw[self.released : boundary], mine)
        self.findings += [f for f in found if f.start >= self.released and f.end <= boundary]
        self.released = boundary
        return out


async def stream_answer(
    req: CreateCompletion,
    ports: Ports,
    settings: GatewaySettings,
    refusals: RecentRefusals,
    send: Send,
    trace: Trace,
) -> Outcome:
    """Admit, stream the model's scanned text through `send`, settle. Never raises for a
    refusal: the Outcome's completion carries it. Cancelling the task that runs this
    (the client went away) stops the model and settles what it used."""
    started = time.perf_counter()
    try:
        outcome = await _stream(req, ports, settings, refusals, send, trace)
    except (Refused, ServiceCallError) as error:
        outcome = Outcome(failed(req.tenant_id, req.request_id, error.info), 0.0)
    outcome.latency_ms = (time.perf_counter() - started) * 1000
    outcome.stages_ms = trace.ms
    return outcome


async def _stream(
    req: CreateCompletion,
    ports: Ports,
    settings: GatewaySettings,
    refusals: RecentRefusals,
    send: Send,
    trace: Trace,
) -> Outcome:
    ok = await admit(req, ports, settings, refusals, trace)
    ids = ok.ids

    async def scan(text: str) -> TextScanned:
        return await _scan(ports, ScanText(**ids, location=ScanLocation.RESPONSE, text=text))

    guard = StreamGuard(scan, settings.stream_hold_chars, settings.stream_step_chars)
    usage, model, outcome = Usage(), ok.model, CallOutcome.FAILED
    final = None
    # llm records a streamed call itself (its final event carries no audit row).
    async with ports.invoke_stream(ok.invocation(audit_by_caller=False)) as call:
        try:
            while final is None:
                event = await call.next()
                if event.done:
                    final = event
                    break
                released = await guard.feed(event.text)
                if released:
                    await send(released)
            trace.lap("invoke_streamed")
            usage, model = final.usage, final.model or ok.model
            _checked(final)
            cut = final.stop_reason == "cancelled"
            outcome = CallOutcome.PARTIAL if cut else CallOutcome.COMPLETED
            rest = await guard.finish()
            if rest:
                await send(rest)
        except BaseException:
            # Refused mid-stream, the client gone (this task cancelled) or a failure:
            # stop the model and charge what it had used when it stopped.
            if final is None:
                usage, model = await _stop_model(ports, ids, call, model)
                outcome = CallOutcome.PARTIAL if usage.total else CallOutcome.FAILED
            await asyncio.shield(_settle(ports, ids, ok.reservation_id, model, usage, outcome))
            raise
    settled = await _settle(ports, ids, ok.reservation_id, model, usage, outcome)
    trace.lap("settle")
    _checked(settled)
    completion = CompletionPublished(
        **ids,
        text=redact(guard.raw, guard.findings),
        model=model,
        usage=usage,
        cost_nanousd=settled.cost_nanousd,
        citations=ok.citations(),
        redactions=sum(f.action is Verdict.REDACT for f in ok.prompt.findings + guard.findings),
    )
    findings = len(ok.prompt.findings) + len(guard.findings)
    return Outcome(completion, 0.0, len(ok.chunks), findings)


async def _stop_model(
    ports: Ports, ids: dict[str, str], call: ModelCall, model: str
) -> tuple[Usage, str]:
    """Tell llm to stop, then read its final event: the usage at the moment it stopped."""
    try:
        await asyncio.shield(ports.cancel_model(CancelModelCall(**ids)))
        async with asyncio.timeout(5):
            while True:
                event = await call.next()
                if event.done:
                    return event.usage, event.model or model
    except (TimeoutError, ServiceCallError, asyncio.CancelledError):
        pass
    return Usage(), model


# How an admitted request is answered, when not by pipeline.answer (streamed requests).
Work = Callable[[CreateCompletion, Trace], Awaitable[Outcome]]
Streams = dict[tuple[str, str], asyncio.Task[Outcome]]


def streamed(
    streams: Streams,
    ports: Ports,
    settings: GatewaySettings,
    refusals: RecentRefusals,
    send: Callable[[bytes], Awaitable[None]],
) -> Work:
    """Answer an admitted request as a stream: scanned text as CompletionDelta messages
    through `send`, then (returned) the outcome. A cancel from the client stops it."""

    async def work(req: CreateCompletion, trace: Trace) -> Outcome:
        seq = 0

        async def send_text(text: str) -> None:
            nonlocal seq
            delta = CompletionDelta(request_id=req.request_id, seq=seq, text=text)
            await send(delta.model_dump_json().encode())
            seq += 1

        key = (req.tenant_id, req.request_id)
        task = asyncio.create_task(stream_answer(req, ports, settings, refusals, send_text, trace))
        streams[key] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the gateway is stopping
            info = ErrorInfo(code=ErrorCode.CANCELLED, message="cancelled by the client")
            return Outcome(failed(req.tenant_id, req.request_id, info), 0.0)
        finally:
            streams.pop(key, None)

    return work


def cancel(streams: Streams, subject: str, body: bytes) -> None:
    """A client's cancel, on its own tenant's subject only (tenants cannot publish on
    another's), names the request; a malformed one is ignored."""
    try:
        stop = CancelCompletion.model_validate_json(body)
    except ValidationError:
        return
    if subjects.tenant_from_subject(subject, 1) != stop.tenant_id:
        return
    task = streams.get((stop.tenant_id, stop.request_id))
    if task is not None:
        log.info("stream.cancelled")
        task.cancel()
