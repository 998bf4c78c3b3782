"""llm's handlers with a fake provider: no broker, no model API."""

from __future__ import annotations

from typing import Any

from services.llm.handlers import HANDLERS, Deps, invoke
from services.llm.providers import Completion, UpstreamError
from shared import subjects
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import Usage
from shared.messages.llm import ChatMessage, InvokeModel, ModelStreamed
from tests.support.handlers import InMemoryBus, recording_trail


class FakeProvider:
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[InvokeModel] = []

    async def complete(self, request: InvokeModel) -> Completion:
        self.calls.append(request)
        if self.fail:
            info = ErrorInfo(code=ErrorCode.UPSTREAM_ERROR, message="down", retryable=True)
            raise UpstreamError(info, status=503)
        usage = Usage(input_tokens=10, output_tokens=3)
        return Completion(request.model, self.name, "the answer", usage, "end_turn")

    async def close(self) -> None:
        pass


def make(fail: bool = False) -> tuple[Deps, FakeProvider, list[Any]]:
    trail, events = recording_trail("llm")
    provider = FakeProvider(fail)
    return Deps(trail=trail, provider=provider), provider, events


def ask(model: str = "m1", tenant: str = "acme") -> InvokeModel:
    return InvokeModel(
        tenant_id=tenant,
        model=model,
        allowed_models=["m1"],
        system="Be brief.",
        messages=[ChatMessage(role="user", content="hi")],
        max_tokens=50,
    )


async def test_an_allowed_call_answers_and_audits_counts_only() -> None:
    deps, _, events = make()
    reply = await invoke(ask(), deps)
    assert reply.ok and reply.text == "the answer" and reply.usage.output_tokens == 3
    (event,) = events
    assert (event.event_type, event.action) == (AuditEventType.API_CALL, "model.invoke")
    assert "the answer" not in str(event.details) and "hi" not in str(event.details.values())


async def test_a_model_not_allowed_is_refused_before_the_provider_and_audited() -> None:
    deps, provider, events = make()
    reply = await invoke(ask(model="m2"), deps)
    assert reply.error is not None and reply.error.code is ErrorCode.MODEL_NOT_ALLOWED
    assert provider.calls == [] and events[-1].event_type is AuditEventType.ACCESS_DENIED


async def test_a_provider_failure_is_the_replys_error_and_audited() -> None:
    deps, _, events = make(fail=True)
    reply = await invoke(ask(), deps)
    assert reply.error is not None and reply.error.retryable
    assert events[-1].status is AuditStatus.FAILURE and events[-1].details["http_status"] == 503


async def test_a_stream_answers_in_pieces_then_a_final_event_on_the_inbox() -> None:
    deps, _, _ = make()
    bus = InMemoryBus(HANDLERS, deps)
    pattern = subjects.service_all("llm", "stream")
    body = ask().model_dump_json().encode()
    await bus.deliver(pattern, subjects.service("llm", "stream", "acme"), body, "_INBOX.gw.1")
    events = [ModelStreamed.model_validate_json(data) for _, data in bus.client.sent]
    assert events[-1].done and events[-1].usage.output_tokens == 3
    assert "".join(e.text for e in events[:-1]) == "the answer"
    assert [e.seq for e in events] == list(range(len(events)))


async def test_a_stream_for_another_tenant_gets_one_final_error_event() -> None:
    deps, provider, _ = make()
    bus = InMemoryBus(HANDLERS, deps)
    pattern = subjects.service_all("llm", "stream")
    body = ask(tenant="globex").model_dump_json().encode()
    await bus.deliver(pattern, subjects.service("llm", "stream", "acme"), body, "_INBOX.gw.1")
    ((_, data),) = bus.client.sent
    final = ModelStreamed.model_validate_json(data)
    assert final.done and final.error is not None
    assert final.error.code is ErrorCode.INVALID_TENANT and provider.calls == []


async def test_a_call_whose_caller_records_the_trail_hands_its_row_back() -> None:
    deps, _, events = make()
    reply = await invoke(ask().model_copy(update={"audit_by_caller": True}), deps)
    assert events == []  # nothing published: the gateway carries it in its own event
    assert reply.audit is not None and reply.audit.action == "model.invoke"
    assert reply.audit.details["output_tokens"] == 3
    refused = await invoke(ask(model="m2").model_copy(update={"audit_by_caller": True}), deps)
    assert events == [] and refused.audit is not None
    assert refused.audit.event_type is AuditEventType.ACCESS_DENIED


async def test_a_stream_records_its_call_itself_even_if_asked_to_hand_it_back() -> None:
    deps, _, events = make()
    bus = InMemoryBus(HANDLERS, deps)
    pattern = subjects.service_all("llm", "stream")
    body = ask().model_copy(update={"audit_by_caller": True}).model_dump_json().encode()
    await bus.deliver(pattern, subjects.service("llm", "stream", "acme"), body, "_INBOX.gw.1")
    assert [e.action for e in events] == ["model.invoke"]  # the final event has no row
