"""An open-loop, constant-rate load generator, shared by every system under test.

Open loop: request i is due at `start + i / rate` whatever happened to earlier ones, and
its latency is measured from that *intended* time, not from when the generator got round
to sending it. A stalled system therefore shows up as queueing delay in the percentiles
instead of silently slowing the generator down (coordinated omission).

A target is just `send(i) -> ok`: the Tenantry pipeline over NATS, or any HTTP gateway
(see bench/peer.py). `step_up` raises the offered rate until the added p99 passes the
limit, each step bounded in time, and reports the highest rate that held.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Send = Callable[[int], Awaitable[bool]]


@dataclass
class Step:
    offered_rps: float
    sent: int
    ok: int
    errors: int
    timeouts: int
    achieved_rps: float
    # Latency from the intended send time minus the stub's fixed delay, in ms.
    added_ms: dict[str, float] = field(default_factory=dict)
    max_send_lag_ms: float = 0.0  # how late the generator itself was; large = generator-bound
    passed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if len(values) < 2:
        one = round(values[0], 2) if values else 0.0
        return {"p50": one, "p90": one, "p99": one, "max": one, "n": len(values)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p90": round(cuts[89], 2),
        "p99": round(cuts[98], 2),
        "max": round(max(values), 2),
        "n": len(values),
    }


async def sequential(send: Send, count: int, delay_s: float, warmup: int = 20) -> dict[str, float]:
    """Concurrency 1: one request at a time; added latency = wall time minus the stub delay."""
    for i in range(warmup):
        await send(-1 - i)
    added: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        ok = await send(i)
        if ok:
            added.append((time.perf_counter() - started - delay_s) * 1000)
    return percentiles(added)


async def open_loop(
    send: Send,
    rate: float,
    duration_s: float,
    delay_s: float,
    *,
    timeout_s: float = 5.0,
    limit_ms: float = 50.0,
    max_error_ratio: float = 0.01,
) -> Step:
    """Offer `rate` requests/s for `duration_s`; wait at most `timeout_s` for stragglers."""
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration_s))
    start = loop.time() + 0.05
    added: list[float] = []
    outcome = {"ok": 0, "errors": 0, "timeouts": 0}
    lag = 0.0

    async def one(i: int, due: float) -> None:
        try:
            ok = await asyncio.wait_for(send(i), timeout_s)
        except TimeoutError:
            outcome["timeouts"] += 1
            return
        except Exception:
            outcome["errors"] += 1
            return
        if ok:
            outcome["ok"] += 1
            added.append((loop.time() - due - delay_s) * 1000)
        else:
            outcome["errors"] += 1

    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        due = start + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        lag = max(lag, loop.time() - due)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = max(duration_s, loop.time() - start)
    stats = percentiles(added)
    failed = outcome["errors"] + outcome["timeouts"]
    # A timed-out request counts as an infinitely slow one for the verdict.
    p99 = stats["p99"] if failed <= count * 0.01 else math.inf
    return Step(
        offered_rps=round(rate, 1),
        sent=count,
        ok=outcome["ok"],
        errors=outcome["errors"],
        timeouts=outcome["timeouts"],
        achieved_rps=round(outcome["ok"] / elapsed, 1),
        added_ms=stats,
        max_send_lag_ms=round(lag * 1000, 2),
        passed=p99 < limit_ms and failed <= count * max_error_ratio,
    )


async def step_up(
    send: Send,
    delay_s: float,
    *,
    start_rps: float = 10.0,
    factor: float = 1.35,
    step_s: float = 4.0,
    limit_ms: float = 50.0,
    stop_ms: float = 1_000.0,
    budget_s: float = 90.0,
) -> dict[str, Any]:
    """Raise the offered rate by `factor` until the system stops keeping up (added p99
    over `stop_ms`, or over 1 % errors), or the time budget runs out.

    `sustained_rps`: the highest offered rate whose added p99 stayed under `limit_ms`
    (the goal's criterion). `keeps_up_rps`: the highest rate served with p99 under
    `stop_ms` and under 1 % errors: capacity, whatever the latency. Every step is
    kept, so the plot shows the knee.
    """
    deadline = time.monotonic() + budget_s
    steps: list[Step] = []
    rate = start_rps
    sustained = keeps_up = 0.0
    while time.monotonic() + step_s < deadline:
        step = await open_loop(send, rate, step_s, delay_s, limit_ms=limit_ms)
        steps.append(step)
        failed = step.errors + step.timeouts
        if step.passed:
            sustained = max(sustained, rate)
        # Open loop: a system that cannot keep up queues, so its p99 passes stop_ms.
        if failed > step.sent * 0.01 or step.added_ms["p99"] > stop_ms:
            break
        keeps_up = rate
        rate *= factor
        await asyncio.sleep(0.5)  # let queues drain between steps
    return {
        "limit_p99_ms": limit_ms,
        "sustained_rps": round(sustained, 1),
        "keeps_up_rps": round(keeps_up, 1),
        "steps": [s.as_dict() for s in steps],
    }
