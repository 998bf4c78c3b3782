"""audit's batch consumers: pull a batch, write it, then ack it, while the next batch
is already being pulled.

Not FastStream's batched pull subscriber, for two measured reasons (bench/audit.py):
- nats-py's `fetch` waits for every message with its own timeout (a task and a timer
  per message): ~31 us a message, a third of the writer's time at 12k events/s. Here
  one pull request asks for the whole batch and its messages are taken as they come:
  ~9 us a message, ack included.
- FastStream's loop fetches only once the handler has returned, so the pull and the
  ClickHouse insert never overlap. Here a fetch task and a write task hand batches over
  a one-slot queue: while batch N is written, N+1 is pulled (memory stays bounded at
  three batches; the consumer's max_ack_pending allows exactly that).

The guarantees are the subscriber's: a batch is acked only after `handle` returned
(rows inserted and malformed messages dead-lettered); a failure naks it (with the
delay a NackMessage asks for), so it is redelivered, and after MAX_DELIVER attempts
nats-server's advisory dead-letters it. Batches are written one at a time, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from faststream.exceptions import NackMessage
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared.logging import get_logger

log = get_logger("tenantry.audit.consumer")

P = TypeVar("P")

# Statuses that end a pull request early: 404 no messages, 408 request expired,
# 409 e.g. max_ack_pending reached or the consumer deleted (then pause before asking
# again, rather than spin on the server).
ENDED = {"404", "408"}
REFUSED = "409"
REFUSED_PAUSE_S = 0.5
# How much longer than the request's own expiry we wait for its end: a request lost
# with a reconnect must not stall the loop.
GRACE_S = 1.0


class BatchConsumer(Generic[P]):
    """One durable pull consumer. Each batch (never empty) goes through `prepare` in the
    pull task (CPU work that needs no earlier batch written, e.g. parsing: it overlaps
    the previous insert), then `handle` in the write task, one batch at a time."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        stream: str,
        durable: str,
        inbox_prefix: str,
        batch_size: int,
        timeout_s: float,
        prepare: Callable[[list[Msg]], P],
        handle: Callable[[list[Msg], P], Awaitable[None]],
    ) -> None:
        self._nc, self._prepare, self._handle = nc, prepare, handle
        self._durable = durable
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = f"{inbox_prefix}{nc.new_inbox().rpartition('.')[2]}"
        self._batch, self._timeout = batch_size, timeout_s
        self._arrived: list[Msg] = []
        self._ended = 0  # pull requests the server ended before filling them
        self._refused = False
        self._wake = asyncio.Event()
        self._ready: asyncio.Queue[tuple[list[Msg], P]] = asyncio.Queue(maxsize=1)
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        # No limit on the inbox's pending messages: what is pulled is bounded already
        # (batch size, max_ack_pending), and a dropped message would wait out ack_wait.
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=0, pending_bytes_limit=0
        )
        self._tasks = [
            asyncio.create_task(self._pull_loop(), name=f"{self._durable}.pull"),
            asyncio.create_task(self._write_loop(), name=f"{self._durable}.write"),
        ]

    async def stop(self) -> None:
        """Stop pulling, let the writer finish the batch it holds and the one queued,
        and give back what was pulled but not started (nak: redelivered at once)."""
        # The flag as well as the cancel: a cancel that lands inside a nats-py call on a
        # connection being torn down (Ctrl-C stops nats-server at the same moment) can
        # come back as a connection error, which the loop would log and retry forever.
        self._stopping = True
        pull, write = self._tasks or (None, None)
        if pull is not None:
            pull.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pull
        if write is not None:
            await self._ready.join()
            write.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await write
        if self._sub is not None:
            await self._sub.unsubscribe()
        for msg in self._take(len(self._arrived)):
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._arrived.append(msg)
        elif status in ENDED or status == REFUSED:
            self._ended += 1
            self._refused = self._refused or status == REFUSED
        else:
            return  # 100: an idle heartbeat (not asked for)
        if len(self._arrived) >= self._batch or self._ended:
            self._wake.set()

    def _take(self, n: int) -> list[Msg]:
        taken, self._arrived = self._arrived[:n], self._arrived[n:]
        return taken

    async def _pull(self) -> list[Msg]:
        """One batch: what is already here, plus one request for the rest, collected
        until full, ended by the server, or past the request's expiry."""
        wanted = self._batch - len(self._arrived)
        if wanted > 0:
            self._ended, self._refused = 0, False
            self._wake.clear()
            request: dict[str, Any] = {"batch": wanted, "expires": int(self._timeout * 1e9)}
            await self._nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._timeout + GRACE_S)
        if self._refused and not self._arrived:
            await asyncio.sleep(REFUSED_PAUSE_S)
        return self._take(self._batch)

    async def _pull_loop(self) -> None:
        while not self._stopping:
            try:
                batch = await self._pull()
            except Exception:
                # Connection trouble: nats-py reconnects and resubscribes the inbox;
                # nothing pulled is lost (unacked messages are redelivered).
                log.warning("pull.failed", consumer=self._durable, exc_info=True)
                await asyncio.sleep(GRACE_S)
                continue
            if not batch:
                continue
            try:
                prepared = self._prepare(batch)
            except Exception:
                # A bug, not a bad message (parse_batch sets those aside): redelivered,
                # and dead-lettered after MAX_DELIVER attempts.
                log.exception("batch.prepare_failed", consumer=self._durable)
                await self._each(batch, lambda m: m.nak())
                continue
            try:
                await self._ready.put((batch, prepared))  # waits while the writer is behind
            except asyncio.CancelledError:
                self._arrived[:0] = batch  # stopping: stop() naks it
                raise

    async def _write_loop(self) -> None:
        while True:
            batch, prepared = await self._ready.get()
            try:
                await self._settle(batch, prepared)
            finally:
                self._ready.task_done()

    async def _settle(self, batch: list[Msg], prepared: P) -> None:
        try:
            await self._handle(batch, prepared)
        except NackMessage as nack:
            delay = nack.extra_options.get("delay")
            await self._each(batch, lambda m: m.nak(delay=delay))
            return
        except Exception:
            # Not acked: redelivered now, up to MAX_DELIVER times, then dead-lettered.
            log.exception("batch.failed", consumer=self._durable, messages=len(batch))
            await self._each(batch, lambda m: m.nak())
            return
        await self._each(batch, lambda m: m.ack())

    async def _each(self, batch: list[Msg], settle: Callable[[Msg], Awaitable[None]]) -> None:
        try:
            for msg in batch:
                await settle(msg)
        except Exception:
            # A lost connection: what was not settled is redelivered after ack_wait, and
            # a redelivery of stored rows is skipped by the writer.
            log.warning("batch.settle_failed", consumer=self._durable, exc_info=True)
