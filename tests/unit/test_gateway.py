from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from services.gateway import intake
from services.gateway.pipeline import answer
from services.gateway.refusals import RecentRefusals
from services.gateway.settings import GatewaySettings
from services.promptconfig.tiers import default_profile
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CreateCompletion, Usage
from shared.messages.leakage import Finding, ScanLocation, ScanText, TextScanned, Verdict
from shared.messages.llm import InvokeModel, ModelInvoked
from shared.messages.metering import AuthorizeRequest, RequestAuthorized, SettleUsage, UsageSettled
from shared.messages.retrieval import (
    Chunk,
    ChunksFound,
    DocumentsIngested,
    IngestDocuments,
    SearchChunks,
)
from shared.messages.tenants import ResolveTenant, TenantConfig, TenantResolved, Tier
from shared.tenancy import UNATTRIBUTED

pytestmark = pytest.mark.unit


@dataclass
class FakePorts:
    """Canned replies; records what the pipeline asked for."""

    known: bool = True
    authorize_error: ErrorInfo | None = None
    block_response: bool = False
    calls: list[str] = field(default_factory=list)
    settled: list[SettleUsage] = field(default_factory=list)
    invoked: list[InvokeModel] = field(default_factory=list)

    async def resolve(self, msg: ResolveTenant) -> TenantResolved:
        self.calls.append("resolve")
        if not self.known:
            return TenantResolved(
                tenant_id=msg.tenant_id,
                error=ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown tenant"),
            )
        profile = default_profile("Acme Corp", Tier.PRO)
        config = TenantConfig(tenant_id=msg.tenant_id, version=1, **profile.model_dump())
        return TenantResolved(tenant_id=msg.tenant_id, config=config, system_prompt="SYS")

    async def authorize(self, msg: AuthorizeRequest) -> RequestAuthorized:
        self.calls.append("authorize")
        return RequestAuthorized(
            tenant_id=msg.tenant_id, reservation_id="r1", error=self.authorize_error
        )

    async def search(self, msg: SearchChunks) -> ChunksFound:
        self.calls.append("search")
        chunk = Chunk(
            tenant_id=msg.tenant_id, document_id="d1", chunk_id="c1", text="Refunds: 45 days."
        )
        return ChunksFound(tenant_id=msg.tenant_id, chunks=[chunk])

    async def scan(self, msg: ScanText) -> TextScanned:
        self.calls.append(f"scan:{msg.location.value}")
        if self.block_response and msg.location is ScanLocation.RESPONSE:
            finding = Finding(
                detector="foreign_tenant",
                kind="tenant_name",
                location=msg.location,
                start=0,
                end=3,
                action=Verdict.BLOCK,
            )
            return TextScanned(tenant_id=msg.tenant_id, verdict=Verdict.BLOCK, findings=[finding])
        return TextScanned(tenant_id=msg.tenant_id, verdict=Verdict.ALLOW, text=msg.text)

    async def invoke(self, msg: InvokeModel) -> ModelInvoked:
        self.calls.append("invoke")
        self.invoked.append(msg)
        return ModelInvoked(
            tenant_id=msg.tenant_id,
            model=msg.model,
            provider="fake",
            text="45 days.",
            usage=Usage(input_tokens=100, output_tokens=5),
        )

    async def settle(self, msg: SettleUsage) -> UsageSettled:
        self.calls.append("settle")
        self.settled.append(msg)
        return UsageSettled(tenant_id=msg.tenant_id, cost_nanousd=375_000)

    async def ingest(self, msg: IngestDocuments) -> DocumentsIngested:
        return DocumentsIngested(tenant_id=msg.tenant_id)


SETTINGS = GatewaySettings()


async def test_happy_path_calls_every_step_in_order() -> None:
    ports = FakePorts()
    out = await answer(
        CreateCompletion(tenant_id="acme", question="Refund window?"), ports, SETTINGS
    )
    done = out.completion
    assert done.error is None and done.text == "45 days." and done.cost_nanousd == 375_000
    assert ports.calls == [
        "resolve",
        "authorize",
        "search",
        "scan:prompt",
        "invoke",
        "scan:response",
        "settle",
    ]
    assert ports.invoked[0].system == "SYS"
    assert "Refunds: 45 days." in ports.invoked[0].messages[0].content
    assert ports.settled[0].usage.output_tokens == 5
    assert [c.document_id for c in done.citations] == ["d1"]


async def test_unknown_tenant_stops_before_metering() -> None:
    ports = FakePorts(known=False)
    out = await answer(CreateCompletion(tenant_id="ghost", question="hi"), ports, SETTINGS)
    assert out.completion.error and out.completion.error.code is ErrorCode.UNKNOWN_TENANT
    assert ports.calls == ["resolve"]


async def test_refused_authorisation_never_calls_the_model() -> None:
    ports = FakePorts(authorize_error=ErrorInfo(code=ErrorCode.RATE_LIMITED, message="slow down"))
    out = await answer(CreateCompletion(tenant_id="acme", question="hi"), ports, SETTINGS)
    assert out.completion.error and out.completion.error.code is ErrorCode.RATE_LIMITED
    assert "invoke" not in ports.calls and "settle" not in ports.calls


async def test_blocked_response_is_still_charged() -> None:
    ports = FakePorts(block_response=True)
    out = await answer(CreateCompletion(tenant_id="acme", question="hi"), ports, SETTINGS)
    assert out.completion.error and out.completion.error.code is ErrorCode.LEAKAGE_BLOCKED
    assert out.completion.text == ""
    assert ports.settled[0].usage.input_tokens == 100  # tokens used are never free


async def test_disallowed_model_and_token_cap_are_refused() -> None:
    ports = FakePorts()
    out = await answer(
        CreateCompletion(tenant_id="acme", question="hi", model="gpt-x"), ports, SETTINGS
    )
    assert out.completion.error and out.completion.error.code is ErrorCode.MODEL_NOT_ALLOWED
    out = await answer(
        CreateCompletion(tenant_id="acme", question="hi", max_tokens=10**5), ports, SETTINGS
    )
    assert out.completion.error and out.completion.error.code is ErrorCode.TOKEN_LIMIT


async def test_after_a_refusal_the_tenant_searches_only_once_admitted() -> None:
    ports = FakePorts(authorize_error=ErrorInfo(code=ErrorCode.RATE_LIMITED, message="slow down"))
    refusals = RecentRefusals(hold_s=60)
    ask = CreateCompletion(tenant_id="acme", question="hi")
    await answer(ask, ports, SETTINGS, refusals)
    # searched and scanned beside authorize
    assert ports.calls == ["resolve", "authorize", "search", "scan:prompt"]
    ports.calls.clear()
    await answer(ask, ports, SETTINGS, refusals)  # over its limit: no free retrieval work
    assert ports.calls == ["resolve", "authorize"]
    ports.calls.clear()
    await answer(CreateCompletion(tenant_id="globex", question="hi"), ports, SETTINGS, refusals)
    assert "search" in ports.calls  # other tenants are not slowed by acme's refusal
    ports.calls.clear()
    ports.authorize_error = None
    out = await answer(ask, ports, SETTINGS, refusals)
    assert out.completion.error is None
    # searched and scanned after admission
    assert ports.calls[:4] == ["resolve", "authorize", "search", "scan:prompt"]


async def test_each_stage_is_timed_for_the_audit_row() -> None:
    out = await answer(CreateCompletion(tenant_id="acme", question="hi"), FakePorts(), SETTINGS)
    assert list(out.stages_ms) == [
        "resolve",
        "search",  # the two steps that ran beside the authorisation, each timed
        "scan_prompt",
        "authorize_and_prepare",
        "invoke",
        "scan_response_and_settle",
    ]
    assert all(ms >= 0 for ms in out.stages_ms.values())
    refused = FakePorts(authorize_error=ErrorInfo(code=ErrorCode.RATE_LIMITED, message="no"))
    recent = RecentRefusals()
    ask = CreateCompletion(tenant_id="acme", question="hi")
    out = await answer(ask, refused, SETTINGS, recent)
    assert list(out.stages_ms)[-1] == "authorize_and_prepare"  # where it stopped
    out = await answer(ask, refused, SETTINGS, recent)
    # Refused lately: nothing runs beside the authorisation, which stops it.
    assert list(out.stages_ms) == ["resolve", "authorize"]


async def test_top_k_0_skips_retrieval() -> None:
    ports = FakePorts()
    out = await answer(CreateCompletion(tenant_id="acme", question="hi", top_k=0), ports, SETTINGS)
    assert out.completion.error is None and out.completion.citations == []
    assert "search" not in ports.calls


async def test_a_failed_search_still_releases_the_hold() -> None:
    class FailingSearch(FakePorts):
        async def search(self, msg: SearchChunks) -> ChunksFound:
            self.calls.append("search")
            return ChunksFound(
                tenant_id=msg.tenant_id,
                error=ErrorInfo(code=ErrorCode.INTERNAL, message="retrieval down"),
            )

    ports = FailingSearch()
    out = await answer(CreateCompletion(tenant_id="acme", question="hi"), ports, SETTINGS)
    assert out.completion.error and out.completion.error.code is ErrorCode.INTERNAL
    assert "invoke" not in ports.calls
    assert ports.settled and ports.settled[0].usage.input_tokens == 0  # hold released


def test_intake_refuses_bad_ids_malformed_bodies_and_mismatches() -> None:
    bad_id = intake.parse("ACME", b"{}")
    assert isinstance(bad_id, intake.Rejected) and bad_id.tenant_id == UNATTRIBUTED
    assert bad_id.error.code is ErrorCode.INVALID_TENANT

    garbage = intake.parse("acme", b"\xff not json")
    assert isinstance(garbage, intake.Rejected)
    assert garbage.error.code is ErrorCode.MALFORMED_REQUEST and garbage.tenant_id == "acme"

    missing = intake.parse("acme", json.dumps({"tenant_id": "acme", "request_id": "abc"}).encode())
    assert isinstance(missing, intake.Rejected) and missing.request_id == "abc"
    assert "question" in missing.error.message

    other = CreateCompletion(tenant_id="globex", question="hi").model_dump_json().encode()
    mismatch = intake.parse("acme", other)
    assert isinstance(mismatch, intake.Rejected) and mismatch.error.code is ErrorCode.INVALID_TENANT

    ok = intake.parse(
        "acme", CreateCompletion(tenant_id="acme", question="hi").model_dump_json().encode()
    )
    assert isinstance(ok, CreateCompletion)
