"""Every message on a tenant's subjects gets an answer, whatever its bytes.

Random bytes, wrong JSON shapes, nulls, deep nesting, bodies over the size limit and
another tenant's id in the body, through the real subjects of the platform as `make
run` starts it (auth on, a tenant's own credentials): sync requests and ingests get an
error reply, durable requests an error completion (or, above the size limit, an error
ack at publish time as well). Answers counted must equal messages sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
import nats.js.errors
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from services.gateway.intake import request_id_of
from shared import subjects
from shared.launcher import Platform
from shared.messages.completions import CompletionPublished
from shared.messages.retrieval import DocumentsIngested
from tests.e2e.test_isolation import onboard

pytestmark = pytest.mark.e2e

OVER_LIMIT = 300 * 1024  # the gateway's default limit is 256 KiB; NATS allows 1 MiB


@dataclass
class Door:
    tenant: str
    other: str
    nc: NatsClient
    completions: dict[str, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_completion(self, msg: Msg) -> None:
        CompletionPublished.model_validate_json(msg.data)  # every completion parses
        rid = msg.subject.rsplit(".", 1)[-1]
        self.completions[rid] = self.completions.get(rid, 0) + 1
        self.arrived.set()

    async def completion_for(self, rid: str, before: int, timeout_s: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.completions.get(rid, 0) <= before:
            assert loop.time() < deadline, f"no completion for {rid!r}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.5)
            except TimeoutError:
                pass


@pytest_asyncio.fixture(scope="module")
async def door(platform: Platform) -> AsyncIterator[Door]:
    suffix = uuid.uuid4().hex[:6]
    tenant, other = f"fuzz-a-{suffix}", f"fuzz-b-{suffix}"
    creds = await onboard(platform, tenant, "Fuzz Analytics")
    await onboard(platform, other, "Other Bakery")
    nc = await nats.connect(
        platform.nats_url,
        user=creds.user,
        password=creds.password,
        inbox_prefix=creds.inbox_prefix,
        allow_reconnect=False,
    )
    d = Door(tenant, other, nc)
    await nc.subscribe(subjects.completions(tenant), cb=d.on_completion)
    await nc.flush()
    yield d
    await nc.close()


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=12,
    )


def _request_shaped(tenant: str, other: str) -> st.SearchStrategy[bytes]:
    """Close to a real request, with one or more fields wrong."""
    value = _json_values()
    body = st.fixed_dictionaries(
        {
            "tenant_id": st.sampled_from([tenant, other, "", "A!b", None, 7]),
            "request_id": st.one_of(st.none(), st.text(max_size=70), st.just("fuzz-rid")),
            "question": st.one_of(st.none(), st.text(max_size=60), st.just(""), value),
            "top_k": st.one_of(st.integers(-3, 80), st.none(), st.text(max_size=3)),
            "documents": st.one_of(st.none(), st.lists(value, max_size=3)),
        },
        optional={"max_tokens": st.one_of(st.integers(), value), "extra": value},
    )
    return body.map(lambda b: json.dumps(b).encode())


def payloads(tenant: str, other: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        _json_values().map(lambda v: json.dumps(v).encode()),
        _request_shaped(tenant, other),
        st.integers(100, 20_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
        st.integers(100, 5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(OVER_LIMIT, OVER_LIMIT + 4096).map(
            lambda n: b'{"question":"' + b"x" * n + b'"}'
        ),
        st.just(b""),
        st.just(b"null"),
    )


async def send(door: Door, path: str, body: bytes) -> None:
    """One message on one path; returns once its answer arrived (or fails the test)."""
    a = door.tenant
    if path == "sync":
        reply = await door.nc.request(subjects.request_sync(a), body, timeout=10)
        done = CompletionPublished.model_validate_json(reply.data)
        assert done.tenant_id == a
    elif path == "ingest":
        reply = await door.nc.request(subjects.ingest(a), body, timeout=10)
        DocumentsIngested.model_validate_json(reply.data)
    else:
        msg_id = uuid.uuid4().hex
        rid = request_id_of(body, msg_id)  # the id the gateway will answer under
        before = door.completions.get(rid, 0)
        try:
            await door.nc.jetstream().publish(
                subjects.request(a), body, headers={"Nats-Msg-Id": msg_id}, timeout=10
            )
        except nats.js.errors.APIError as refused:
            assert len(body) > OVER_LIMIT and refused.code == 413, refused
        await door.completion_for(rid, before)


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples in CI as here
)
@given(data=st.data())
async def test_every_malformed_message_is_answered(door: Door, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(["sync", "ingest", "durable"]))
    body = data.draw(payloads(door.tenant, door.other))
    await send(door, path, body)


async def test_sustained_malformed_load_drops_nothing(door: Door) -> None:
    """Thousands in flight at once, 64 at a time: answers == messages."""
    rng = random.Random(18)
    shapes = [
        lambda: rng.randbytes(rng.randint(0, 300)),
        lambda: b"[" * rng.randint(1_000, 30_000),
        lambda: json.dumps({"tenant_id": door.other, "question": "hi"}).encode(),
        lambda: json.dumps({"tenant_id": door.tenant, "question": None}).encode(),
        lambda: json.dumps([None] * rng.randint(0, 50)).encode(),
        lambda: b'{"question":"' + b"y" * (OVER_LIMIT + rng.randint(0, 999)) + b'"}',
    ]
    jobs = [(rng.choice(["sync", "ingest", "durable"]), rng.choice(shapes)()) for _ in range(3000)]
    gate = asyncio.Semaphore(64)
    answered = 0

    async def one(path: str, body: bytes) -> None:
        nonlocal answered
        async with gate:
            await send(door, path, body)
            answered += 1

    await asyncio.gather(*(one(path, body) for path, body in jobs))
    assert answered == len(jobs)
