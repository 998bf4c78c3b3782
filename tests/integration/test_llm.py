"""llm over a real nats-server, with the real anthropic SDK talking to a local Messages API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import SecretStr

from services.llm.adapters import AnthropicProvider
from services.llm.app import make_service as bootstrap
from services.llm.offline import HEADER, NO_ANSWER
from services.llm.providers import UpstreamError
from services.llm.settings import LlmSettings
from shared import subjects
from shared.bus import call
from shared.messages.audit import AuditEventType, AuditRecorded, AuditStatus
from shared.messages.base import ErrorCode
from shared.messages.llm import ChatMessage, InvokeModel, ModelInvoked
from shared.messages.retrieval import Chunk
from shared.service import Service
from tests.support.bus import ready
from tests.support.messages_api import MessagesApiStub, count_tokens

pytestmark = pytest.mark.integration


KEY = "sk-ant-api03-integration-0123456789abcdefghij"
MODEL = "claude-haiku-4-5"
SYSTEM = "You are the assistant of Quokka Freight. Answer from the passages."


@pytest.fixture
def stub() -> Iterator[MessagesApiStub]:
    with MessagesApiStub(cache_read_input_tokens=2) as server:
        yield server


def anthropic_settings(nats_url: str, stub: MessagesApiStub, retries: int = 0) -> LlmSettings:
    return LlmSettings(
        nats_url=nats_url,
        anthropic_api_key=SecretStr(KEY),
        anthropic_base_url=stub.url,
        anthropic_max_retries=retries,
    )


@pytest_asyncio.fixture
async def llm(
    nats_url: str, stub: MessagesApiStub, client_broker: NatsBroker
) -> AsyncIterator[Service]:
    service = bootstrap(anthropic_settings(nats_url, stub))
    await service.start()
    await ready(client_broker, "llm", "invoke")
    yield service
    await service.stop()


@pytest_asyncio.fixture
async def offline_llm(nats_url: str, client_broker: NatsBroker) -> AsyncIterator[Service]:
    # An explicit None beats any ANTHROPIC_API_KEY in the environment.
    service = bootstrap(LlmSettings(nats_url=nats_url, anthropic_api_key=None))
    await service.start()
    await ready(client_broker, "llm", "invoke")
    yield service
    await service.stop()


def invoke_msg(tid: str, question: str, **overrides: object) -> InvokeModel:
    fields: dict[str, object] = dict(
        tenant_id=tid,
        model=MODEL,
        allowed_models=[MODEL, "claude-sonnet-4-5"],
        system=SYSTEM,
        messages=[ChatMessage(role="user", content=question)],
        max_tokens=256,
    )
    fields.update(overrides)
    return InvokeModel.model_validate(fields)


async def invoke(broker: NatsBroker, msg: InvokeModel) -> ModelInvoked:
    subject = subjects.service("llm", "invoke", msg.tenant_id)
    return await call(broker, subject, msg, ModelInvoked, 10)


class AuditTap:
    """Collects the audit events published for one tenant (core subscription on evt.<tid>.audit)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[AuditRecorded] = asyncio.Queue()

    async def on_msg(self, msg: Msg) -> None:
        self._queue.put_nowait(AuditRecorded.model_validate_json(msg.data))

    async def wait(self, count: int, timeout: float = 5.0) -> list[AuditRecorded]:
        """Exactly the first `count` events, and checks that no more arrive soon after."""
        events = [await asyncio.wait_for(self._queue.get(), timeout) for _ in range(count)]
        await asyncio.sleep(0.1)
        return events + [self._queue.get_nowait() for _ in range(self._queue.qsize())]


async def tapped(broker: NatsBroker, tid: str) -> tuple[AuditTap, Subscription]:
    collector = AuditTap()
    sub = await broker.connection.subscribe(subjects.audit_event(tid), cb=collector.on_msg)
    await broker.connection.flush()
    return collector, sub


async def test_real_usage_comes_back_from_the_sdk(
    llm: Service,
    stub: MessagesApiStub,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("llm")
    audit, sub = await tapped(client_broker, tid)
    question = "Where is my parcel? Order 4411."
    reply = await invoke(client_broker, invoke_msg(tid, question))

    assert reply.ok, reply.error
    assert (reply.provider, reply.model, reply.stop_reason) == ("anthropic", MODEL, "end_turn")
    assert "you asked: Where is my parcel? Order 4411." in reply.text
    # Usage is the stub's count of what the SDK really sent, not an estimate.
    assert reply.usage.input_tokens == count_tokens(SYSTEM) + count_tokens(question)
    assert reply.usage.output_tokens == count_tokens(reply.text)
    assert reply.usage.cache_read_input_tokens == 2
    assert reply.usage.cache_creation_input_tokens == 0  # null from the API

    sent = stub.requests[-1]
    assert sent.path == "/v1/messages" and sent.system == SYSTEM
    assert sent.body["max_tokens"] == 256 and sent.body["model"] == MODEL
    assert sent.body["messages"] == [{"role": "user", "content": question}]
    assert KEY in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))

    (event,) = await audit.wait(1)
    await sub.unsubscribe()
    assert event.event_type is AuditEventType.API_CALL and event.status is AuditStatus.SUCCESS
    assert event.details["provider"] == "anthropic"
    assert event.details["input_tokens"] == reply.usage.input_tokens
    assert event.details["output_tokens"] == reply.usage.output_tokens
    raw = event.model_dump_json()
    assert "parcel" not in raw and "Quokka" not in raw and KEY not in raw


async def test_model_not_on_the_allow_list_is_refused(
    llm: Service,
    stub: MessagesApiStub,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("llm")
    audit, sub = await tapped(client_broker, tid)
    reply = await invoke(client_broker, invoke_msg(tid, "hi", model="claude-opus-4-1"))
    assert reply.error and reply.error.code is ErrorCode.MODEL_NOT_ALLOWED
    assert "claude-opus-4-1" in reply.error.message and MODEL in reply.error.message
    assert stub.requests == []  # nothing was spent
    (event,) = await audit.wait(1)
    await sub.unsubscribe()
    assert event.event_type is AuditEventType.ACCESS_DENIED


@pytest.mark.parametrize(("status", "kind"), [(500, "api_error"), (429, "rate_limit_error")])
async def test_upstream_error_gets_a_clear_reply_and_the_service_carries_on(
    llm: Service,
    stub: MessagesApiStub,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
    status: int,
    kind: str,
) -> None:
    tid = new_tenant_id("llm")
    audit, sub = await tapped(client_broker, tid)
    stub.fail(status, times=1, message=f"upstream exploded; key {KEY}")
    reply = await invoke(client_broker, invoke_msg(tid, "hello"))
    assert reply.error and reply.error.code is ErrorCode.UPSTREAM_ERROR
    assert reply.error.retryable
    assert f"HTTP {status}" in reply.error.message and kind in reply.error.message
    assert KEY not in reply.error.message
    (event,) = await audit.wait(1)
    assert event.event_type is AuditEventType.API_CALL and event.status is AuditStatus.FAILURE
    assert event.details["http_status"] == status

    again = await invoke(client_broker, invoke_msg(tid, "hello again"))
    assert again.ok and again.usage.input_tokens > 0
    await sub.unsubscribe()


async def test_slow_model_calls_run_concurrently(
    llm: Service,
    stub: MessagesApiStub,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    stub.set_delay(0.4)
    tid = new_tenant_id("llm")
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(invoke(client_broker, invoke_msg(tid, f"q{i}")) for i in range(8))
    )
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in replies)
    assert elapsed < 8 * 0.4 / 2, f"8 calls took {elapsed:.2f}s: they ran one after another"


async def test_sdk_retries_a_429_before_giving_up(
    stub: MessagesApiStub, nats_url: str, new_tenant_id: Callable[[str], str]
) -> None:
    provider = AnthropicProvider.from_settings(anthropic_settings(nats_url, stub, retries=1))
    try:
        stub.fail(429, times=1)
        done = await provider.complete(invoke_msg(new_tenant_id("llm"), "hi"))
    finally:
        await provider.close()
    assert done.text and len(stub.requests) == 2


async def test_offline_provider_answers_from_the_context(
    offline_llm: Service, client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("llm")
    chunks = [
        Chunk(
            tenant_id=tid,
            document_id="faq/shipping",
            chunk_id="c1",
            text="Parcels to Norway take five working days. Express delivery costs 12 euros.",
        ),
        Chunk(
            tenant_id=tid,
            document_id="faq/returns",
            chunk_id="c2",
            text="Returns are accepted within 14 days. Keep the original packaging.",
        ),
    ]
    reply = await invoke(
        client_broker,
        invoke_msg(tid, "How long do parcels to Norway take?", context=chunks, model=MODEL),
    )
    assert reply.ok, reply.error
    assert (reply.provider, reply.model) == ("offline", "offline-extractive")
    assert reply.text.startswith(HEADER)
    assert "Parcels to Norway take five working days. [source: faq/shipping]" in reply.text
    assert "Returns" not in reply.text
    expected_input = count_tokens(SYSTEM) + count_tokens("How long do parcels to Norway take?")
    expected_input += sum(count_tokens(c.text) for c in chunks)
    assert reply.usage.input_tokens == expected_input
    assert reply.usage.output_tokens == count_tokens(reply.text)

    nothing = await invoke(
        client_broker, invoke_msg(tid, "Who won the 1998 World Cup?", context=chunks)
    )
    assert nothing.ok and nothing.text == NO_ANSWER


async def test_a_slow_provider_gets_a_clear_timeout_error(
    stub: MessagesApiStub, nats_url: str, new_tenant_id: Callable[[str], str]
) -> None:
    settings = anthropic_settings(nats_url, stub).model_copy(update={"anthropic_timeout_s": 0.3})
    provider = AnthropicProvider.from_settings(settings)
    stub.set_delay(1.0)
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.complete(invoke_msg(new_tenant_id("llm"), "hi"))
    finally:
        await provider.close()
    assert caught.value.info.retryable
    assert caught.value.info.message == "model provider did not answer within 0.3s"
