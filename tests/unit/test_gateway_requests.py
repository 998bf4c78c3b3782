"""The gateway's handlers and request functions without a broker: fake ports, a fake
JetStream that keeps what is published, the real handler table."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from faststream.nats import NatsBroker

from services.gateway import handlers, requests
from services.gateway.handlers import HANDLERS, Deps, StreamDoor, TenantDoor
from services.gateway.settings import GatewaySettings
from shared import subjects
from shared.audit import AuditTrail
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CompletionPublished, CreateCompletion
from shared.messages.llm import InvokeModel, ModelInvoked
from shared.messages.retrieval import (
    ChunksFound,
    Document,
    DocumentsIngested,
    IngestDocuments,
    SearchChunks,
)
from shared.tenancy import UNATTRIBUTED
from tests.support.fakebus import FakeBroker
from tests.unit.test_gateway import FakePorts

pytestmark = pytest.mark.unit

TID = "acme-corp"


def make_deps(ports: FakePorts | None = None) -> tuple[Deps, FakeBroker]:
    broker = FakeBroker()
    nats_broker = cast(NatsBroker, broker)
    deps = Deps(
        settings=GatewaySettings(),
        broker=nats_broker,
        ports=ports or FakePorts(),
        trail=AuditTrail(nats_broker, "gateway"),
    )
    return deps, broker


def audit_rows(broker: FakeBroker) -> list[AuditRecorded]:
    return [body for body, _, _ in broker.published if isinstance(body, AuditRecorded)]


def request_body(tenant: str = TID, **fields: Any) -> bytes:
    req = CreateCompletion(tenant_id=tenant, question="What is the refund window?", **fields)
    return req.model_dump_json().encode()


async def test_a_request_is_answered_and_audited_once() -> None:
    deps, broker = make_deps()
    done = await requests.complete(deps, TID, request_body(request_id="r-1"))
    assert done.error is None and done.request_id == "r-1"
    (row,) = audit_rows(broker)
    assert row.action == requests.COMPLETE and row.status is AuditStatus.SUCCESS
    assert row.tenant_id == TID and row.request_id == "r-1"
    assert row.details["model"] == done.model


async def test_a_body_naming_another_tenant_is_a_denial() -> None:
    deps, broker = make_deps()
    ports = cast(FakePorts, deps.ports)
    done = await requests.complete(deps, TID, request_body("globex", request_id="r-2"))
    assert done.error is not None and done.error.code is ErrorCode.INVALID_TENANT
    assert done.tenant_id == TID and done.request_id == "r-2"
    (row,) = audit_rows(broker)
    assert row.event_type is AuditEventType.ACCESS_DENIED
    assert ports.calls == []  # nothing was looked up, reserved or called


async def test_an_invalid_subject_tenant_is_unattributed_and_keeps_the_fallback_id() -> None:
    deps, broker = make_deps()
    done = await requests.complete(deps, "Bad*Id", b"not json", fallback_id="msg-7")
    assert done.tenant_id == UNATTRIBUTED and done.request_id == "msg-7"
    assert done.error is not None and done.error.code is ErrorCode.INVALID_TENANT
    (row,) = audit_rows(broker)
    assert row.tenant_id == UNATTRIBUTED and row.details["raw_tenant"] == "'Bad*Id'"


async def test_a_body_with_a_tenant_id_that_is_no_id_is_a_denial_not_a_typo() -> None:
    deps, broker = make_deps()
    body = json.dumps({"tenant_id": "../etc", "question": "q"}).encode()
    done = await requests.complete(deps, TID, body)
    assert done.error is not None and done.error.code is ErrorCode.INVALID_TENANT
    assert audit_rows(broker)[0].event_type is AuditEventType.ACCESS_DENIED


async def test_a_malformed_body_is_answered_as_malformed() -> None:
    deps, broker = make_deps()
    done = await requests.complete(deps, TID, b'{"tenant_id": "acme-corp"}')
    assert done.error is not None and done.error.code is ErrorCode.MALFORMED_REQUEST
    assert audit_rows(broker)[0].event_type is AuditEventType.API_CALL


async def test_the_pipeline_refusal_becomes_the_completion() -> None:
    deps, _ = make_deps(FakePorts(known=False))
    done = await requests.complete(deps, TID, request_body())
    assert done.error is not None and done.error.code is ErrorCode.UNKNOWN_TENANT


async def test_a_crash_completion_never_raises_whatever_the_bytes() -> None:
    done = requests.crashed("x" * 500, b"[" * 100_000, "msg-1")
    assert done.tenant_id == UNATTRIBUTED and done.request_id == "msg-1"
    assert done.error is not None and done.error.retryable


async def test_ingest_is_admitted_resolved_and_handed_on() -> None:
    deps, _ = make_deps()
    body = IngestDocuments(tenant_id=TID, documents=[Document(document_id="d", text="t")])
    result = await requests.ingest(deps, TID, body.model_dump_json().encode())
    assert isinstance(result, DocumentsIngested) and result.error is None


async def test_ingest_for_another_tenant_is_denied_and_audited() -> None:
    deps, broker = make_deps()
    body = IngestDocuments(tenant_id="globex", documents=[Document(document_id="d", text="t")])
    result = await requests.ingest(deps, TID, body.model_dump_json().encode())
    assert result.error is not None and result.error.code is ErrorCode.INVALID_TENANT
    assert result.request_id == body.request_id  # the client can match the refusal
    (row,) = audit_rows(broker)
    assert row.event_type is AuditEventType.ACCESS_DENIED and row.action == requests.INGEST


async def test_a_refused_durable_request_is_also_published_as_its_completion() -> None:
    deps, broker = make_deps()
    info_body = request_body(request_id="r-9")
    info = ErrorInfo(code=ErrorCode.PAYLOAD_TOO_LARGE, message="too large")
    ack = await handlers.refuse_queued(TID, {}, info_body, info, deps)
    assert json.loads(ack)["error"]["code"] == 413
    completions = [
        (body, subject)
        for body, subject, _ in broker.published
        if not isinstance(body, AuditRecorded)
    ]
    ((body, subject),) = completions
    assert subject == subjects.completion_for_token(TID, "r-9")
    assert CompletionPublished.model_validate_json(body).error == info


def test_the_table_covers_every_tenant_facing_subject_once() -> None:
    doors = {door.subject for door in HANDLERS.doors}
    assert doors == {
        subjects.ALL_REQUESTS,
        subjects.ALL_SYNC_REQUESTS,
        subjects.ALL_STREAM_REQUESTS,
        subjects.ALL_INGESTS,
    }
    assert [d.subject for d in HANDLERS.doors if isinstance(d, StreamDoor)] == [
        subjects.ALL_STREAM_REQUESTS
    ]
    assert all(isinstance(d, TenantDoor | StreamDoor) for d in HANDLERS.doors)
    assert [s.subject for s in HANDLERS.subscribers] == [subjects.ALL_CANCELS]


def test_an_unbound_table_refuses_to_build_a_router() -> None:
    deps, _ = make_deps()
    with pytest.raises(RuntimeError, match="bind the gateway's table"):
        HANDLERS.router(lambda: deps)


class TrailPorts(FakePorts):
    """Retrieval hands its data-access row back when asked to (audit_by_caller)."""

    asked_to_carry: bool = False

    async def search(self, msg: SearchChunks) -> ChunksFound:
        found = await super().search(msg)
        self.asked_to_carry = msg.audit_by_caller
        row = AuditTrail(cast(NatsBroker, FakeBroker()), "retrieval").build_for(
            msg, event_type=AuditEventType.DATA_ACCESS, action="chunks.search"
        )
        return found.model_copy(update={"audit": row})


async def test_the_request_row_carries_the_steps_rows_in_one_event() -> None:
    ports = TrailPorts()
    deps, broker = make_deps(ports)
    await requests.complete(deps, TID, request_body(request_id="r-3"))
    assert ports.asked_to_carry
    (row,) = audit_rows(broker)  # one JetStream write for the whole trail
    assert [(r.service, r.action) for r in row.carried] == [("retrieval", "chunks.search")]
    assert row.carried[0].request_id == "r-3" and row.carried[0].tenant_id == TID


async def test_a_crash_still_records_the_steps_that_ran() -> None:
    class Crashing(TrailPorts):
        async def invoke(self, msg: InvokeModel) -> ModelInvoked:
            raise RuntimeError("bug")

    deps, broker = make_deps(Crashing())
    with pytest.raises(RuntimeError):
        await requests.complete(deps, TID, request_body(request_id="r-4"))
    (row,) = audit_rows(broker)
    assert row.event_type is AuditEventType.ERROR and row.status is AuditStatus.FAILURE
    assert [r.action for r in row.carried] == ["chunks.search"]
