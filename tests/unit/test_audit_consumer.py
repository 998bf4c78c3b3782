"""The batch consumer against a fake connection: one pull request per batch, a batch is
acked only after its handler returned, a failure naks it (with the asked delay), and
the server's end-of-request status closes a short batch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from faststream.exceptions import NackMessage
from nats.aio.msg import Msg

from services.audit.consumer import BatchConsumer

pytestmark = pytest.mark.unit

NEXT = "$JS.API.CONSUMER.MSG.NEXT.S.d"


class FakeNats:
    """Records what is published; the test plays the server through `deliver`."""

    def __init__(self) -> None:
        self.cb: Callable[[Msg], Awaitable[None]] | None = None
        self.published: list[tuple[str, bytes]] = []
        self.pulled = asyncio.Event()

    def new_inbox(self) -> str:
        return "_INBOX.abc"

    async def subscribe(self, subject: str, cb: Any, **_: Any) -> Any:
        self.cb = cb

        class Sub:
            async def unsubscribe(self) -> None:
                pass

        return Sub()

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        self.published.append((subject, payload))
        if subject == NEXT:
            self.pulled.set()

    def settled(self, reply: str) -> list[bytes]:
        return [p for s, p in self.published if s == reply]

    async def deliver(self, seq: int, status: str | None = None) -> Msg:
        headers = {"Status": status} if status else {"Nats-Msg-Id": f"m{seq}"}
        reply = "" if status else f"$JS.ACK.S.d.1.{seq}.{seq}.1700000000.0"
        msg = Msg(_client=cast(Any, self), subject="evt.acme.audit", reply=reply, headers=headers)
        assert self.cb is not None
        await self.cb(msg)
        return msg


async def run(
    handle: Callable[[list[Msg], int], Awaitable[None]], batch: int = 3
) -> tuple[FakeNats, BatchConsumer[int]]:
    nc = FakeNats()
    consumer: BatchConsumer[int] = BatchConsumer(
        cast(Any, nc),
        stream="S",
        durable="d",
        inbox_prefix="_INBOX_audit.",
        batch_size=batch,
        timeout_s=5,
        prepare=len,
        handle=handle,
    )
    await consumer.start()
    await asyncio.wait_for(nc.pulled.wait(), 1)
    return nc, consumer


async def test_one_request_per_batch_and_acks_only_after_the_handler() -> None:
    seen: list[tuple[list[str], int, list[bytes]]] = []
    done = asyncio.Event()

    async def handle(batch: list[Msg], prepared: int) -> None:
        # Nothing of the batch is acked while it is being written.
        seen.append(([m.reply for m in batch], prepared, nc.settled(batch[0].reply)))
        done.set()

    nc, consumer = await run(handle)
    request = json.loads(next(p for s, p in nc.published if s == NEXT))
    assert request["batch"] == 3
    msgs = [await nc.deliver(i) for i in (1, 2, 3)]
    await asyncio.wait_for(done.wait(), 1)
    await consumer.stop()
    assert seen == [([m.reply for m in msgs], 3, [])]
    assert all(nc.settled(m.reply) == [b""] for m in msgs)  # an empty body is an ack


async def test_a_failed_batch_is_nakked_with_the_delay_asked_for() -> None:
    done = asyncio.Event()

    async def handle(batch: list[Msg], prepared: int) -> None:
        done.set()
        raise NackMessage(delay=4.0)

    nc, consumer = await run(handle, batch=2)
    msgs = [await nc.deliver(i) for i in (1, 2)]
    await asyncio.wait_for(done.wait(), 1)
    await consumer.stop()
    for m in msgs:
        assert nc.settled(m.reply) == [b'-NAK {"delay": 4000000000}']


async def test_the_servers_end_of_request_closes_a_short_batch() -> None:
    got: list[int] = []
    done = asyncio.Event()

    async def handle(batch: list[Msg], prepared: int) -> None:
        got.append(prepared)
        done.set()

    nc, consumer = await run(handle, batch=10)
    await nc.deliver(1)
    await nc.deliver(2)
    await nc.deliver(0, status="408")  # the request expired with 2 of 10
    await asyncio.wait_for(done.wait(), 1)
    await consumer.stop()
    assert got == [2]


async def test_stop_ends_even_when_the_connection_turns_the_cancel_into_an_error() -> None:
    """Ctrl-C stops nats-server with the services: a cancel landing inside a publish on a
    connection being torn down comes back as a connection error, not CancelledError."""
    nc = FakeNats()
    blocked = asyncio.Event()

    async def publish(subject: str, payload: bytes = b"", reply: str = "") -> None:
        blocked.set()
        try:
            await asyncio.Event().wait()  # the connection is gone: nothing goes out
        except asyncio.CancelledError:
            raise ConnectionError("connection closed") from None

    nc.publish = publish  # type: ignore[method-assign]

    async def handle(batch: list[Msg], prepared: int) -> None:
        pass

    consumer: BatchConsumer[int] = BatchConsumer(
        cast(Any, nc),
        stream="S",
        durable="d",
        inbox_prefix="_INBOX_audit.",
        batch_size=3,
        timeout_s=5,
        prepare=len,
        handle=handle,
    )
    await consumer.start()
    await asyncio.wait_for(blocked.wait(), 1)  # the pull request is stuck in publish
    stopping = asyncio.create_task(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "stop() hung on a torn-down connection"
