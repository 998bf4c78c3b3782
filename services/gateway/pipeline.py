"""One request's path: look up, authorise, retrieve, scan, call the model, scan, settle.

Plain async functions over `Ports`, so the whole path is testable without a broker.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from services.gateway.ports import Ports
from services.gateway.refusals import RecentRefusals
from services.gateway.settings import GatewaySettings
from shared.bus import ServiceCallError
from shared.messages.audit import AuditRecorded
from shared.messages.base import ErrorCode, ErrorInfo, Reply
from shared.messages.completions import Citation, CompletionPublished, CreateCompletion, Usage
from shared.messages.leakage import ScanLocation, ScanText, TextScanned, Verdict
from shared.messages.llm import ChatMessage, InvokeModel
from shared.messages.metering import AuthorizeRequest, CallOutcome, SettleUsage, UsageSettled
from shared.messages.retrieval import Chunk, SearchChunks
from shared.messages.tenants import ResolveTenant, TenantConfig


class Refused(Exception):
    """The request cannot be answered; `info` is what the client reads."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


@dataclass
class Outcome:
    completion: CompletionPublished
    latency_ms: float
    chunks: int = 0
    findings: int = 0
    stages_ms: dict[str, float] = field(default_factory=dict)


class Trace:
    """What one request did, for its audit row: how long each stage took, in order (so
    an operator can see where a slow request spent its time), and the audit rows the
    services it called handed back to be carried in that row (AuditRecorded.carried)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.ms: dict[str, float] = {}
        self.carried: list[AuditRecorded] = []

    def carry(self, row: AuditRecorded | None) -> None:
        if row is not None:
            self.carried.append(row)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = round((now - self._last) * 1000, 2)
        self._last = now

    def note(self, stage: str, since: float) -> None:
        """A step inside a stage that runs beside another (e.g. the search inside
        authorize_and_prepare): its own duration, without ending the stage."""
        self.ms[stage] = round((time.perf_counter() - since) * 1000, 2)


def _checked(reply: Reply) -> None:
    if reply.error is not None:
        raise Refused(reply.error)


async def answer(
    req: CreateCompletion,
    ports: Ports,
    settings: GatewaySettings,
    refusals: RecentRefusals | None = None,
    trace: Trace | None = None,
) -> Outcome:
    started = time.perf_counter()
    trace = trace or Trace()
    try:
        outcome = await _answer(req, ports, settings, refusals or RecentRefusals(), trace)
    except Refused as refused:
        outcome = Outcome(failed(req.tenant_id, req.request_id, refused.info), 0.0)
    except ServiceCallError as error:
        outcome = Outcome(failed(req.tenant_id, req.request_id, error.info), 0.0)
    outcome.latency_ms = (time.perf_counter() - started) * 1000
    outcome.stages_ms = trace.ms
    return outcome


def failed(tenant_id: str, request_id: str, info: ErrorInfo) -> CompletionPublished:
    """The one way an error completion is built (intake, pipeline, stream, crash)."""
    return CompletionPublished(tenant_id=tenant_id, request_id=request_id, error=info)


@dataclass(frozen=True)
class Admitted:
    """A request cleared to call the model: its reservation is held until settled."""

    ids: dict[str, str]
    config: TenantConfig
    model: str
    max_tokens: int
    system: str
    reservation_id: str
    chunks: list[Chunk]
    prompt: TextScanned

    def invocation(self, audit_by_caller: bool = True) -> InvokeModel:
        return InvokeModel(
            **self.ids,
            model=self.model,
            allowed_models=self.config.allowed_models,
            system=self.system,
            messages=[ChatMessage(role="user", content=self.prompt.text)],
            max_tokens=self.max_tokens,
            context=self.chunks,
            audit_by_caller=audit_by_caller,
        )

    def citations(self) -> list[Citation]:
        return [
            Citation(document_id=c.document_id, chunk_id=c.chunk_id, score=c.score)
            for c in self.chunks
        ]


async def admit(
    req: CreateCompletion,
    ports: Ports,
    settings: GatewaySettings,
    refusals: RecentRefusals,
    trace: Trace,
) -> Admitted:
    """Look up, authorise (reserve), retrieve and scan the prompt: everything before the
    model is called. A failure after the reservation releases it (settled at zero)."""
    ids = {"tenant_id": req.tenant_id, "request_id": req.request_id}
    resolved = await ports.resolve(ResolveTenant(**ids))
    trace.lap("resolve")
    _checked(resolved)
    assert resolved.config is not None
    config = resolved.config
    model, max_tokens = _model_and_cap(req, config)

    estimate = _estimate_tokens(resolved.system_prompt, req, settings)
    authorize = AuthorizeRequest(
        **ids,
        model=model,
        estimated_input_tokens=estimate,
        max_tokens=max_tokens,
        limits=config.limits,
    )
    search = (
        SearchChunks(**ids, query=req.question, top_k=req.top_k, audit_by_caller=True)
        if req.top_k > 0
        else None
    )
    prepared: Prepared | BaseException | None = None
    if refusals.may_search_early(req.tenant_id):
        # Retrieval and the prompt scan do not depend on the authorisation: run them
        # beside it, so the critical path is the longer of the two instead of their
        # sum. Nothing prepared is used, and nothing reaches the model, unless the
        # request is admitted.
        admitted, prepared = await asyncio.gather(
            ports.authorize(authorize),
            _prepare(ports, req, search, trace),
            return_exceptions=True,
        )
        if isinstance(admitted, BaseException):
            raise admitted
        authorized = admitted
        trace.lap("authorize_and_prepare")
    else:
        authorized = await ports.authorize(authorize)
        trace.lap("authorize")
    if authorized.error is not None:
        refusals.refused(req.tenant_id)
    _checked(authorized)

    try:
        if prepared is None:
            prepared = await _prepare(ports, req, search, trace)
            trace.lap("prepare")
        if isinstance(prepared, BaseException):
            raise prepared
    except BaseException:
        await _settle(ports, ids, authorized.reservation_id, model, Usage())
        raise
    chunks, prompt = prepared
    return Admitted(
        ids=ids,
        config=config,
        model=model,
        max_tokens=max_tokens,
        system=resolved.system_prompt,
        reservation_id=authorized.reservation_id,
        chunks=chunks,
        prompt=prompt,
    )


Prepared = tuple[list[Chunk], TextScanned]


async def _prepare(
    ports: Ports, req: CreateCompletion, search: SearchChunks | None, trace: Trace
) -> Prepared:
    """Retrieve (if asked) and scan the prompt the model would get; raises Refused."""
    started = time.perf_counter()
    chunks: list[Chunk] = []
    if search is not None:
        found = await ports.search(search)
        trace.carry(found.audit)
        _checked(found)
        chunks = found.chunks
        trace.note("search", started)
    scanning = time.perf_counter()
    prompt = await _scan(
        ports,
        ScanText(
            tenant_id=req.tenant_id,
            request_id=req.request_id,
            location=ScanLocation.PROMPT,
            text=_user_prompt(req, chunks),
            context=chunks,
        ),
    )
    trace.note("scan_prompt", scanning)
    return chunks, prompt


async def _answer(
    req: CreateCompletion,
    ports: Ports,
    settings: GatewaySettings,
    refusals: RecentRefusals,
    trace: Trace,
) -> Outcome:
    ok = await admit(req, ports, settings, refusals, trace)
    ids = ok.ids
    usage, answered_by = Usage(), ok.model
    try:
        invoked = await ports.invoke(ok.invocation())
        trace.lap("invoke")
        trace.carry(invoked.audit)
        usage, answered_by = invoked.usage, invoked.model or ok.model
        _checked(invoked)
    except BaseException:
        # Always settle: releases the reservation, and charges whatever tokens were
        # used even when the model itself failed.
        await _settle(ports, ids, ok.reservation_id, answered_by, usage)
        raise
    # The response scan and the settle need only the model's answer: run them at once.
    # The call is charged whatever the scan decides (the tokens were used).
    scanned, settled = await asyncio.gather(
        _scan(ports, ScanText(**ids, location=ScanLocation.RESPONSE, text=invoked.text)),
        _settle(ports, ids, ok.reservation_id, answered_by, usage),
        return_exceptions=True,
    )
    trace.lap("scan_response_and_settle")
    for result in (settled, scanned):
        if isinstance(result, BaseException):
            raise result
    assert isinstance(scanned, TextScanned) and isinstance(settled, UsageSettled)
    _checked(settled)
    completion = CompletionPublished(
        **ids,
        text=scanned.text,
        model=answered_by,
        usage=usage,
        cost_nanousd=settled.cost_nanousd,
        citations=ok.citations(),
        redactions=sum(f.action is Verdict.REDACT for f in ok.prompt.findings + scanned.findings),
    )
    findings = len(ok.prompt.findings) + len(scanned.findings)
    return Outcome(completion, 0.0, len(ok.chunks), findings)


async def _settle(
    ports: Ports,
    ids: dict[str, str],
    reservation_id: str,
    model: str,
    usage: Usage,
    outcome: CallOutcome = CallOutcome.COMPLETED,
) -> UsageSettled:
    return await ports.settle(
        SettleUsage(**ids, reservation_id=reservation_id, model=model, usage=usage, outcome=outcome)
    )


def _model_and_cap(req: CreateCompletion, config: TenantConfig) -> tuple[str, int]:
    model = req.model or config.default_model
    if model not in config.allowed_models:
        raise Refused(
            ErrorInfo(
                code=ErrorCode.MODEL_NOT_ALLOWED,
                message=f"model {model!r} is not allowed for this tenant; "
                f"allowed: {', '.join(config.allowed_models)}",
            )
        )
    cap = config.limits.max_tokens_per_request
    if req.max_tokens is not None and req.max_tokens > cap:
        raise Refused(
            ErrorInfo(
                code=ErrorCode.TOKEN_LIMIT,
                message=f"max_tokens {req.max_tokens} exceeds this tenant's limit of {cap}",
            )
        )
    return model, req.max_tokens or cap


def _estimate_tokens(system: str, req: CreateCompletion, settings: GatewaySettings) -> int:
    """An upper estimate before retrieval, so the reservation covers the worst case."""
    chars = len(system) + len(req.question) + req.top_k * settings.max_chunk_chars + 400
    return math.ceil(chars / settings.chars_per_token)


def _user_prompt(req: CreateCompletion, chunks: list[Chunk]) -> str:
    if not chunks:
        return req.question
    passages = "\n\n---\n\n".join(
        f"[{i}] (document {c.document_id})\n{c.text}" for i, c in enumerate(chunks, 1)
    )
    return (
        "Context passages from this organisation's own documents:\n\n"
        f"{passages}\n\nQuestion: {req.question}"
    )


async def _scan(ports: Ports, msg: ScanText) -> TextScanned:
    scanned = await ports.scan(msg)
    _checked(scanned)
    if scanned.verdict is Verdict.BLOCK:
        kinds = sorted(
            {f"{f.detector}/{f.kind}" for f in scanned.findings if f.action is Verdict.BLOCK}
        )
        raise Refused(
            ErrorInfo(
                code=ErrorCode.LEAKAGE_BLOCKED,
                message=f"blocked by leakage scanning of the {msg.location.value}: "
                f"{', '.join(kinds) or 'policy'}",
            )
        )
    return scanned
