"""Authorise-plus-settle throughput and latency, with 1 and with 3 metering replicas.

Each replica is its own process (`python -m services.metering`), as in production,
sharing one nats-server started here on a free port in a temporary folder. A load
generator in this process keeps CONCURRENCY request pairs in flight (authorize, then
settle with real usage) for DURATION_S per scenario:

  spread  - requests round-robin over 20 tenants (the common case)
  hot     - every request for ONE tenant: every write lands on the same KV entry,
            so this is the compare-and-set mechanism's worst case

On this 2-core machine the generator, nats-server and the replicas share the CPUs,
so 3 replicas measure correctness under contention more than extra capacity.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from shared import natsserver, subjects
from shared.bus import call, ensure_topology
from shared.messages.completions import Usage
from shared.messages.metering import (
    AuthorizeRequest,
    MeteringTotals,
    QueryMeteringTotals,
    RequestAuthorized,
    SettleUsage,
    UsageSettled,
)
from shared.messages.tenants import TenantLimits

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 32
DURATION_S = 8.0
WARMUP_S = 1.0
SPREAD_TENANTS = 20
MODEL = "claude-haiku-4-5"
LIMITS = TenantLimits(
    requests_per_minute=1_000_000,
    tokens_per_minute=10**12,
    max_tokens_per_request=4_096,
    monthly_budget_nanousd=10**15,
)
USAGE = Usage(input_tokens=800, output_tokens=120, cache_read_input_tokens=64)


@dataclass
class Sample:
    authorize_ms: list[float] = field(default_factory=list)
    settle_ms: list[float] = field(default_factory=list)
    pair_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def run(results_dir: Path) -> dict[str, Any]:
    return asyncio.run(_run())


async def _run() -> dict[str, Any]:
    results: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "cores": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-metering-") as tmp:
        server, port = natsserver.start(Path(tmp) / "nats", log_file=Path(tmp) / "nats.log")
        url = f"nats://127.0.0.1:{port}"
        try:
            nc = await nats.connect(url, name="bench-metering")
            await ensure_topology(nc.jetstream())
            for replicas in (1, 3):
                procs = _start_replicas(url, replicas, Path(tmp))
                try:
                    await _wait_ready(nc, replicas)
                    for scenario, tenants in (("spread", SPREAD_TENANTS), ("hot", 1)):
                        run_id = f"r{replicas}-{scenario}-{int(time.time())}"
                        tids = [f"bench-{run_id}-{i}" for i in range(tenants)]
                        name = f"{replicas}_replica{'s' if replicas > 1 else ''}_{scenario}"
                        results[name] = await _scenario(nc, tids)
                finally:
                    _stop(procs)
            await nc.drain()
        finally:
            server.terminate()
            server.wait(timeout=10)
    return results


def _start_replicas(url: str, n: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TENANTRY_NATS_URL": url,
        "TENANTRY_LOG_LEVEL": "WARNING",
        "TENANTRY_DATA_DIR": str(tmp / "var"),
    }
    procs = []
    for i in range(n):
        # The child keeps its own copy of the log's descriptor; ours closes at once.
        with open(tmp / f"metering-{n}-{i}.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.metering"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


async def _wait_ready(nc: NatsClient, replicas: int) -> None:
    """Every replica answers health (not a queue group), so count distinct answers."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.health("metering"), b"", reply=inbox)
        answers = 0
        try:
            while answers < replicas:
                msg = await sub.next_msg(timeout=0.3)
                # With nobody subscribed yet the server answers a 503 status, not a reply.
                answers += msg.data == b"metering"
        except (TimeoutError, nats.errors.TimeoutError):
            pass
        await sub.unsubscribe()
        if answers >= replicas:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{replicas} metering replicas did not all start")


async def _pair(nc: NatsClient, tid: str, sample: Sample | None) -> bool:
    started = time.perf_counter()
    ask = AuthorizeRequest(
        tenant_id=tid, model=MODEL, estimated_input_tokens=1_000, max_tokens=256, limits=LIMITS
    )
    hold = await call(
        nc, subjects.service("metering", "authorize", tid), ask, RequestAuthorized, 30
    )
    authorized = time.perf_counter()
    if hold.error:
        if sample is not None:
            sample.errors[f"authorize:{hold.error.code.value}"] += 1
        return False
    done = SettleUsage(
        tenant_id=tid,
        request_id=ask.request_id,
        reservation_id=hold.reservation_id,
        model=MODEL,
        usage=USAGE,
    )
    settled = await call(nc, subjects.service("metering", "settle", tid), done, UsageSettled, 30)
    finished = time.perf_counter()
    if settled.error:
        if sample is not None:
            sample.errors[f"settle:{settled.error.code.value}"] += 1
        return False
    if sample is not None:
        sample.authorize_ms.append((authorized - started) * 1000)
        sample.settle_ms.append((finished - authorized) * 1000)
        sample.pair_ms.append((finished - started) * 1000)
    return True


async def _scenario(nc: NatsClient, tids: list[str]) -> dict[str, Any]:
    sample = Sample()
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + WARMUP_S
    stop_at = measure_from + DURATION_S
    completed = 0

    async def worker(w: int) -> None:
        nonlocal completed
        i = w
        while loop.time() < stop_at:
            measuring = loop.time() >= measure_from
            ok = await _pair(nc, tids[i % len(tids)], sample if measuring else None)
            completed += ok
            i += CONCURRENCY
        return None

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    settled = 0
    for tid in tids:
        seen = await call(
            nc,
            subjects.service("metering", "totals", tid),
            QueryMeteringTotals(tenant_id=tid),
            MeteringTotals,
            30,
        )
        settled += seen.requests_settled
    pairs = len(sample.pair_ms)
    return {
        "tenants": len(tids),
        "pairs_per_s": round(pairs / DURATION_S, 1),
        "authorize_ms": _percentiles(sample.authorize_ms),
        "settle_ms": _percentiles(sample.settle_ms),
        "pair_ms": _percentiles(sample.pair_ms),
        "errors": dict(sample.errors),
        # Every pair the generator saw succeed is in metering's own count, and no more.
        "metering_count_matches": settled == completed,
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": 0.0, "p99": 0.0}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p99": round(cuts[98], 2)}
