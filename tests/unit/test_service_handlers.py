"""The shared request/reply path of every service's handler table, without a broker:
admission (tenant token, body, body tenant), the typed reply whatever happens, and the
reply-subject rule."""

from __future__ import annotations

from dataclasses import dataclass

from shared import subjects
from shared.audit import AuditTrail
from shared.intake import Refusal, admit, error_reply, reply_ok
from shared.messages.audit import AuditEventType
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.tenants import ResolveTenant, TenantResolved
from shared.service import Handlers, Rpc
from shared.tenancy import UNATTRIBUTED
from tests.support.handlers import InMemoryBus, recording_trail

INBOX = "_INBOX.test.1"


@dataclass(frozen=True)
class Deps:
    trail: AuditTrail
    crash: bool = False


async def resolve(msg: ResolveTenant, deps: Deps) -> TenantResolved:
    if deps.crash:
        raise RuntimeError("secret detail that must not reach the caller")
    return reply_ok(TenantResolved, msg, system_prompt="hello")


TABLE = Handlers[Deps]("demo", rpcs=[Rpc("resolve", ResolveTenant, TenantResolved, resolve)])
PATTERN = subjects.service_all("demo", "resolve")


def bus(crash: bool = False) -> tuple[InMemoryBus, list[object]]:
    trail, events = recording_trail("demo")
    return InMemoryBus(TABLE, Deps(trail, crash)), events  # type: ignore[return-value]


def replies(b: InMemoryBus) -> list[TenantResolved]:
    return [TenantResolved.model_validate_json(data) for _, data in b.client.sent]


async def test_a_good_request_gets_the_handlers_reply() -> None:
    b, events = bus()
    body = ResolveTenant(tenant_id="acme", request_id="r1").model_dump_json().encode()
    await b.deliver(PATTERN, "svc.demo.resolve.acme", body, INBOX)
    (reply,) = replies(b)
    assert reply.ok and reply.system_prompt == "hello" and reply.request_id == "r1"
    assert events == []


async def test_a_body_for_another_tenant_is_denied_and_audited() -> None:
    b, events = bus()
    body = ResolveTenant(tenant_id="other", request_id="r2").model_dump_json().encode()
    await b.deliver(PATTERN, "svc.demo.resolve.acme", body, INBOX)
    (reply,) = replies(b)
    assert reply.error is not None and reply.error.code is ErrorCode.INVALID_TENANT
    assert (reply.tenant_id, reply.request_id) == ("acme", "r2")
    (event,) = events
    assert event.event_type is AuditEventType.ACCESS_DENIED and event.request_id == "r2"  # type: ignore[attr-defined]


async def test_a_bad_subject_token_is_unattributed_and_a_bad_body_malformed() -> None:
    b, events = bus()
    await b.deliver(PATTERN, "svc.demo.resolve.Bad_Id", b"{}", INBOX)
    await b.deliver(PATTERN, "svc.demo.resolve.acme", b"not json", INBOX)
    bad_id, bad_body = replies(b)
    assert bad_id.tenant_id == UNATTRIBUTED and bad_id.error is not None
    assert bad_id.error.code is ErrorCode.INVALID_TENANT
    assert bad_body.error is not None and bad_body.error.code is ErrorCode.MALFORMED_REQUEST
    assert len(events) == 1  # only the access denial is audited


async def test_a_crash_is_a_generic_retryable_error() -> None:
    b, _ = bus(crash=True)
    body = ResolveTenant(tenant_id="acme").model_dump_json().encode()
    await b.deliver(PATTERN, "svc.demo.resolve.acme", body, INBOX)
    (reply,) = replies(b)
    assert reply.error is not None and reply.error.code is ErrorCode.INTERNAL
    assert reply.error.retryable and "secret" not in reply.error.message


async def test_a_reply_subject_outside_the_platform_inbox_is_not_answered() -> None:
    b, events = bus()
    body = ResolveTenant(tenant_id="acme").model_dump_json().encode()
    await b.deliver(PATTERN, "svc.demo.resolve.acme", body, "tenant.other.completion.x")
    assert b.client.sent == [] and len(events) == 1


def test_admit_and_the_reply_builders_share_one_shape() -> None:
    refused = admit("acme", b'{"tenant_id": "zed"}', ResolveTenant)
    assert isinstance(refused, Refusal) and refused.denied
    info = ErrorInfo(code=ErrorCode.NOT_FOUND, message="nothing")
    assert error_reply(TenantResolved, refused, info).tenant_id == "acme"
    ok = admit("acme", b'{"tenant_id": "acme", "request_id": "r"}', ResolveTenant)
    assert isinstance(ok, ResolveTenant)
    assert reply_ok(TenantResolved, ok).request_id == "r"
