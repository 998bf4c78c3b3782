"""api's routes with a fake key source and a fake gateway: no broker, no HTTP server
(httpx's ASGI transport calls the Starlette app in-process)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from services.api.handlers import Deps, build_app
from services.api.server import HttpServer
from services.api.settings import ApiSettings
from services.promptconfig.tiers import default_profile
from shared.bus import ServiceCallError
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import (
    CompletionDelta,
    CompletionPublished,
    CreateCompletion,
    Usage,
)
from shared.messages.tenants import TenantConfig, TenantResolved, Tier
from shared.tenancy import UNATTRIBUTED
from tests.support.handlers import recording_trail

TID = "acme-1"
KEY = "tnty_acme-1_0123456789ab_secretsecret"
ANTHROPIC = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
OPENAI = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}


class FakeKeys:
    async def tenant_of(self, key: str) -> str | None:
        return TID if key == KEY else None


@dataclass
class FakeStream:
    events: list[CompletionDelta | CompletionPublished]
    finished: bool = False
    closed: bool = False

    async def next(self) -> CompletionDelta | CompletionPublished:
        event = self.events.pop(0)
        self.finished = isinstance(event, CompletionPublished)
        return event

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeGateway:
    answer: CompletionPublished | ServiceCallError | None = None
    streamed: list[CompletionDelta | CompletionPublished] = field(default_factory=list)
    asked: list[CreateCompletion] = field(default_factory=list)
    streams: list[FakeStream] = field(default_factory=list)

    async def complete(self, request: CreateCompletion) -> CompletionPublished:
        self.asked.append(request)
        if isinstance(self.answer, ServiceCallError):
            raise self.answer
        return self.answer or CompletionPublished(
            tenant_id=request.tenant_id,
            request_id=request.request_id,
            text="the answer",
            model=request.model or "",
            usage=Usage(input_tokens=7, output_tokens=3),
        )

    async def stream(self, request: CreateCompletion) -> FakeStream:
        self.asked.append(request)
        self.streams.append(FakeStream(list(self.streamed)))
        return self.streams[-1]

    async def models(self, tenant_id: str) -> TenantResolved:
        profile = default_profile("Acme", Tier.PRO)
        config = TenantConfig(**profile.model_dump(), tenant_id=tenant_id, version=1)
        return TenantResolved(tenant_id=tenant_id, request_id="r1", config=config)


@dataclass
class Door:
    client: httpx.AsyncClient
    gateway: FakeGateway
    events: list[AuditRecorded]


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    trail, events = recording_trail("api")
    gateway = FakeGateway()
    app = build_app()
    settings = ApiSettings(max_body_bytes=2048)
    server = HttpServer(app, "127.0.0.1", 0)  # never started: the transport calls the app
    app.state.deps = Deps(settings, FakeKeys(), gateway, trail, server)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
        yield Door(client, gateway, events)


def _key(key: str = KEY) -> dict[str, str]:
    return {"x-api-key": key}


async def test_the_tenant_is_the_keys_and_the_answer_is_anthropics_shape(door: Door) -> None:
    body = {**ANTHROPIC, "tenant_id": "someone-else"}
    r = await door.client.post("/v1/messages", json=body, headers=_key())
    assert r.status_code == 200
    assert r.json()["content"] == [{"type": "text", "text": "the answer"}]
    assert r.json()["usage"]["input_tokens"] == 7
    assert [a.tenant_id for a in door.gateway.asked] == [TID]


async def test_openai_takes_a_bearer_key(door: Door) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    r = await door.client.post("/v1/chat/completions", json=OPENAI, headers=auth)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "the answer"


async def test_a_bad_key_is_refused_and_audited_without_asking_the_gateway(door: Door) -> None:
    r = await door.client.post("/v1/messages", json=ANTHROPIC, headers=_key("tnty_nope"))
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert door.gateway.asked == []
    [event] = door.events
    assert event.event_type == AuditEventType.ACCESS_DENIED
    assert event.tenant_id == UNATTRIBUTED
    assert "tnty_nope" not in event.model_dump_json()


async def test_no_key_at_all(door: Door) -> None:
    r = await door.client.get("/v1/models")
    assert r.status_code == 401
    assert door.events[0].error == "no API key"


async def test_a_body_over_the_limit_is_413_before_parsing(door: Door) -> None:
    big = {**ANTHROPIC, "messages": [{"role": "user", "content": "x" * 4096}]}
    r = await door.client.post("/v1/messages", json=big, headers=_key())
    assert r.status_code == 413
    assert door.gateway.asked == []


async def test_a_malformed_body_is_400(door: Door) -> None:
    r = await door.client.post("/v1/messages", content=b"{not json", headers=_key())
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_platform_errors_become_each_apis_status(door: Door) -> None:
    info = ErrorInfo(code=ErrorCode.RATE_LIMITED, message="slow down")
    door.gateway.answer = CompletionPublished(tenant_id=TID, request_id="r1", error=info)
    r = await door.client.post("/v1/messages", json=ANTHROPIC, headers=_key())
    assert r.status_code == 429
    timeout = ErrorInfo(code=ErrorCode.UPSTREAM_ERROR, message="no answer", retryable=True)
    door.gateway.answer = ServiceCallError(timeout)
    r = await door.client.post("/v1/chat/completions", json=OPENAI, headers=_key())
    assert r.status_code == 502


async def test_a_stream_sends_each_delta_then_closes(door: Door) -> None:
    door.gateway.streamed = [
        CompletionDelta(request_id="r1", seq=0, text="Hel"),
        CompletionDelta(request_id="r1", seq=1, text="lo"),
        CompletionPublished(tenant_id=TID, request_id="r1", text="Hello", model="claude-x"),
    ]
    body = {**ANTHROPIC, "stream": True}
    r = await door.client.post("/v1/messages", json=body, headers=_key())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    texts = [d["delta"]["text"] for d in data if d["type"] == "content_block_delta"]
    assert texts == ["Hel", "lo"]
    assert data[-1]["type"] == "message_stop"
    assert door.gateway.streams[0].closed


async def test_a_refusal_before_any_text_is_a_plain_http_error(door: Door) -> None:
    info = ErrorInfo(code=ErrorCode.MODEL_NOT_ALLOWED, message="no such model")
    door.gateway.streamed = [CompletionPublished(tenant_id=TID, request_id="r1", error=info)]
    body = {**OPENAI, "stream": True}
    r = await door.client.post("/v1/chat/completions", json=body, headers=_key())
    assert r.status_code == 404
    assert door.gateway.streams[0].closed


async def test_models_lists_the_tenants_allowed_models(door: Door) -> None:
    r = await door.client.get("/v1/models", headers=_key())
    assert r.status_code == 200
    allowed = default_profile("Acme", Tier.PRO).allowed_models
    assert [m["id"] for m in r.json()["data"]] == allowed
