"""Streaming end to end: the model's tokens reach the HTTP client as they are produced,
through the real llm (the anthropic SDK against a Messages API stub that streams a token
every few milliseconds), gateway, leakage and the HTTP door.

- text arrives while the model is still generating;
- a secret the model writes is redacted even when split across deltas, and nothing
  unscanned reaches the client;
- another tenant's name mid-answer ends the stream with an error event;
- a client that hangs up stops the model call upstream, and metering charges the
  tokens used so far (outcome partial).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from services.api.app import make_service as api_app
from services.api.settings import ApiSettings
from services.gateway.app import make_service as gateway_app
from services.gateway.settings import GatewaySettings
from services.leakage.app import make_service as leakage_app
from services.leakage.settings import LeakageSettings
from services.llm.app import make_service as llm_app
from services.llm.settings import LlmSettings
from services.metering.app import make_service as metering_app
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from services.retrieval.app import make_service as retrieval_app
from services.retrieval.settings import RetrievalSettings
from shared import natsserver, subjects
from shared.bus import call
from shared.messages.apikeys import ApiKeyIssued, IssueApiKey
from shared.messages.lifecycle import OnboardTenant
from shared.messages.metering import CostRecorded
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.service import Service
from tests.support.messages_api import MessagesApiStub, build_message

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-5"
TOKEN_DELAY_S = 0.01


@dataclass
class Rig:
    url: str
    nats_url: str
    stub: MessagesApiStub
    tenant: str
    key: str
    rival: str


async def _tenant(ops: OpsClient, prefix: str, name: str) -> tuple[str, str]:
    tid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    done = await ops.onboard(OnboardTenant(tenant_id=tid, name=name, tier=Tier.PRO))
    assert done.ok, done.error
    key = await call(
        ops.nc,
        subjects.service("access", "key_issue", tid),
        IssueApiKey(tenant_id=tid),
        ApiKeyIssued,
        10,
    )
    return tid, key.key


@pytest_asyncio.fixture(scope="module")
async def rig(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    from services.access.app import make_service as access_app
    from services.access.settings import AccessSettings

    common = {"nats_url": nats_url, "data_dir": Path(tmp_path_factory.mktemp("stream"))}
    stub = MessagesApiStub().start()
    stub.set_token_delay(TOKEN_DELAY_S)
    port = natsserver.free_port()
    services: list[Service] = [
        promptconfig_app(PromptConfigSettings(**common)),
        access_app(AccessSettings(**common)),
        metering_app(MeteringSettings(**common)),
        retrieval_app(RetrievalSettings(**common)),
        leakage_app(LeakageSettings(**common)),
        llm_app(
            LlmSettings(
                **common, anthropic_api_key="sk-ant-test-0123456789", anthropic_base_url=stub.url
            )
        ),
        # Small hold-back so a short stub answer visibly streams in several pieces.
        gateway_app(GatewaySettings(**common, stream_hold_chars=24, stream_step_chars=8)),
        api_app(ApiSettings(**common, api_port=port)),
    ]
    for service in services:
        await service.start()
    async with OpsClient(nats_url) as ops:
        tid, key = await _tenant(ops, "stream-a", "Alpha Streams")
        await _tenant(ops, "stream-b", "Zebulon Quarries")
    yield Rig(f"http://127.0.0.1:{port}", nats_url, stub, tid, key, "Zebulon Quarries")
    for service in reversed(services):
        await service.stop()
    stub.stop()


def _client(rig: Rig) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=rig.key, base_url=rig.url, max_retries=0)


async def test_tokens_reach_the_client_while_the_model_is_still_generating(rig: Rig) -> None:
    # The stub echoes the question: a long one makes a long, slowly generated answer.
    question = "Please explain " + " ".join(f"point {i}" for i in range(40))
    arrivals: list[float] = []
    started = time.monotonic()
    async with _client(rig).messages.stream(
        model=MODEL, max_tokens=500, messages=[{"role": "user", "content": question}]
    ) as stream:
        async for _ in stream.text_stream:
            arrivals.append(time.monotonic() - started)
        final = await stream.get_final_message()
    total = time.monotonic() - started
    text = final.content[0].text
    assert text.startswith("Stub answer from") and "point 20" in text
    assert len(arrivals) >= 5
    # The first text came long before the last token was generated (~100 tokens x 10 ms).
    assert arrivals[0] < total / 2, (arrivals[0], total)
    assert final.usage.output_tokens > 50 and final.usage.input_tokens > 0


async def test_a_secret_split_across_deltas_never_reaches_the_client(rig: Rig) -> None:
    # The stub repeats the question, so the model's answer carries this email.
    secret = "jane.doe.contracts@example.com"
    raw: list[str] = []
    async with _client(rig).messages.stream(
        model=MODEL,
        max_tokens=500,
        messages=[{"role": "user", "content": f"Summarise the note from {secret} please"}],
    ) as stream:
        async for piece in stream.text_stream:
            raw.append(piece)
    streamed = "".join(raw)
    assert "jane.doe" not in streamed and "@example" not in streamed
    assert "[EMAIL]" in streamed


async def test_another_tenants_name_mid_answer_ends_the_stream_with_an_error(rig: Rig) -> None:
    # The question is harmless; the model (the stub, told to) adds the rival's name at
    # the end of its answer, so only the response scan can catch it, mid-stream.
    rig.stub.set_suffix(f" For more, ask {rig.rival} directly.")
    received = ""
    try:
        with pytest.raises(anthropic.APIStatusError, match="leakage"):
            async with _client(rig).messages.stream(
                model=MODEL,
                max_tokens=500,
                messages=[{"role": "user", "content": "Describe " + "the weather " * 12}],
            ) as stream:
                async for piece in stream.text_stream:
                    received += piece
    finally:
        rig.stub.set_suffix("")
    assert received.startswith("Stub answer from")  # text went out before the block
    assert "Zebulon" not in received and "Quarries" not in received


async def test_a_client_that_hangs_up_stops_the_model_and_pays_for_what_it_used(
    rig: Rig, client_broker: NatsBroker
) -> None:
    costs: list[CostRecorded] = []

    async def on_cost(msg: Msg) -> None:
        costs.append(CostRecorded.model_validate_json(msg.data))

    sub = await client_broker.connection.subscribe(subjects.cost_event(rig.tenant), cb=on_cost)
    cut_before = rig.stub.state.streams_cut
    question = "Tell me everything about " + " ".join(f"topic {i}" for i in range(60))
    body = {
        "model": MODEL,
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }
    headers = {"x-api-key": rig.key, "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=rig.url, timeout=30) as http:
        async with http.stream("POST", "/v1/messages", json=body, headers=headers) as response:
            assert response.status_code == 200
            seen = ""
            async for line in response.aiter_lines():
                if line.startswith("data:") and "text_delta" in line:
                    seen += json.loads(line[5:])["delta"]["text"]
                    break  # hang up after the first text
    assert seen
    for _ in range(100):
        if costs:
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    assert costs, "no cost event: the cut-short call was not settled"
    cost = costs[-1]
    assert cost.outcome.value == "partial"
    whole = build_message({**body, "model": MODEL})["usage"]["output_tokens"]
    assert 0 < cost.usage.output_tokens < whole, (cost.usage.output_tokens, whole)
    assert cost.usage.input_tokens > 0 and cost.cost_nanousd > 0
    # Upstream, the provider's response was closed before it finished generating.
    for _ in range(100):
        if rig.stub.state.streams_cut > cut_before:
            break
        await asyncio.sleep(0.05)
    assert rig.stub.state.streams_cut > cut_before
