"""End to end: the floor, added latency at concurrency 1, sustained throughput, memory.

The model is the Messages API stub (bench/stub.py) answering after 0 ms and 100 ms;
every service runs as its own process with auth on, as `make run` starts them, over
100 onboarded tenants (enterprise tier, three documents each). Added latency is the
client's publish to the completion received, minus the stub's delay.

  floor         nats-py request/reply and acked JetStream publish (bench/floor.py)
  concurrency1  p50/p90/p99 added, full pipeline (top_k=4) and gateway-only (top_k=0)
  throughput    open loop, constant rate, stepped up until added p99 > 50 ms
                (bench/loadgen.py), with 1 and with 2 copies of each scalable service
  rss_mb        every process at idle and the peak seen under load
  cpu_ms_per_request  per process, at concurrency 1 (the profile's first cut: which
                process spends the machine's two cores)

BENCH_PIPELINE_COHOST chooses the layout (shared.launcher.parse_cohost): `none` (default,
one process per service, as `make run`), `critical` (the request path's six services in
one process), `all` (every service in one), or explicit groups. Co-hosted services run
one copy, so the 2-copies pass runs only with `none`. BENCH_PIPELINE_REPLICAS=1 skips the
2-copies pass (e.g. to compare layouts at equal cost).

NATS round trips one full request makes, counted from the code (services/gateway/
pipeline.py, handlers and the services it calls). Tenant configs come from the
gateway's watched cache (no round trip); independent calls run side by side, so the
critical path is shorter than the count:
  2  client -> gateway intake -> JetStream publish of the request, acked (the gateway
     stores it on intake.<tid>.request and hands the client JetStream's ack)
  2  authorize (+ its compare-and-set on the metering KV entry), beside
  2  search, then the prompt scan (retrieval's data-access row comes back in the reply)
  1  invoke (llm's row comes back in the reply)
  3  settle (+ its compare-and-set + the cost event), beside
  1  scan response
  2  the completion, beside the gateway's audit event carrying the trail (both acked
     JetStream publishes)
 = 9 round trips deep, 13 made in all, plus 2 one-way deliveries (the request to the
   gateway's pull consumer, the completion to the client); 6 JetStream writes (request,
   two compare-and-sets, cost event, completion, audit event). top_k=0 skips the
   search: still 9 deep, 12 made. Before the trail became one event, retrieval and llm
   each published their own audit event: 15 made, 8 JetStream writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from bench import floor, loadgen
from bench.rig import Rig, close_rig, open_rig, summary, temp_dir
from shared.client import TenantClient
from shared.launcher import Groups, parse_cohost

TENANTS = 100
DELAYS_S = (0.0, 0.1)
REPLICAS = (1, 2)
SEQUENTIAL = {0.0: 300, 0.1: 60}
STEP_BUDGET_S = 70.0
HOPS = {
    "round_trips_made_full": 13,
    "round_trips_made_top_k_0": 12,
    "round_trips_deep": 9,
    "one_way_deliveries": 2,
    "jetstream_writes": 6,
    "counted_from": "services/gateway/pipeline.py and the handlers it calls",
}


def run(results_dir: Path) -> dict[str, Any]:
    layout = os.environ.get("BENCH_PIPELINE_COHOST", "none")
    cohost = parse_cohost(layout)
    results: dict[str, Any] = {"cores": os.cpu_count(), "tenants": TENANTS, "hops": HOPS}
    results["layout"] = {"cohost": layout, "processes": ["+".join(g) for g in cohost]}
    results["load_1min_before"] = os.getloadavg()[0]
    results["floor"] = floor.measure()
    if os.environ.get("BENCH_PIPELINE_PARTS") == "concurrency1":
        # A quick look (~1.5 min) while working on the request path: latency and CPU per
        # request at concurrency 1, one copy of each service, no throughput steps.
        results["replicas_1"] = asyncio.run(_with_replicas(1, True, False, cohost))
        results["load_1min_after"] = os.getloadavg()[0]
        return results
    copies: tuple[int, ...] = REPLICAS
    if cohost or os.environ.get("BENCH_PIPELINE_REPLICAS") == "1":
        copies = (1,)
    for replicas in copies:
        results[f"replicas_{replicas}"] = asyncio.run(
            _with_replicas(replicas, replicas == 1, True, cohost)
        )
    results["load_1min_after"] = os.getloadavg()[0]
    floor_p50 = results["floor"]["request_reply_ms"]["p50"]
    full_p50 = results["replicas_1"]["concurrency1"]["delay_0ms"]["full"]["p50"]
    results["goal"] = {
        "full_added_p50_ms": full_p50,
        "floor_rr_p50_ms": floor_p50,
        "ratio_to_floor": round(full_p50 / floor_p50, 1) if floor_p50 else None,
        "target_ratio": 8,
    }
    return results


async def _with_replicas(
    replicas: int, sequential: bool, throughput: bool = True, cohost: Groups = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with temp_dir() as tmp:
        rig = await open_rig(Path(tmp), TENANTS, replicas, DELAYS_S[0], cohost=cohost)
        try:
            await asyncio.sleep(2)
            out["rss_idle_mb"] = rig.rss_mb()
            if sequential:
                out["concurrency1"] = await _concurrency1(rig)
            peak: dict[str, float] = {}
            for delay in DELAYS_S if throughput else ():
                await asyncio.to_thread(rig.stub.set_delay, delay)
                rig.top_k = 4
                out[f"throughput_delay_{int(delay * 1000)}ms"] = await _throughput(rig, delay, peak)
            out["rss_under_load_peak_mb"] = peak
            out.update(summary(rig))
        finally:
            await close_rig(rig)
    return out


async def _concurrency1(rig: Rig) -> dict[str, Any]:
    tenant = rig.tenants[0]
    out: dict[str, Any] = {}
    async with TenantClient(
        tenant.tenant_id, rig.platform.nats_url, user=tenant.user, password=tenant.password
    ) as client:
        for delay in DELAYS_S:
            await asyncio.to_thread(rig.stub.set_delay, delay)
            by_path: dict[str, Any] = {}
            for label, top_k in (("full", 4), ("gateway_only_top_k_0", 0)):

                async def send(_: int, top_k: int = top_k) -> bool:
                    done = await client.submit(client.request(tenant.question, top_k=top_k))
                    return done.error is None

                before = rig.cpu_s()
                by_path[label] = await loadgen.sequential(send, SEQUENTIAL[delay], delay)
                if delay == 0.0:
                    # Where the work goes: CPU ms per request in each process (the
                    # 20 warm-up requests are counted too, hence the divisor).
                    after, n = rig.cpu_s(), SEQUENTIAL[delay] + 20
                    by_path[label]["cpu_ms_per_request"] = {
                        name: round((after[name] - before[name]) * 1000 / n, 2) for name in after
                    }
                    # Services and nats-server together (not the stub or the generator).
                    by_path[label]["cpu_ms_per_request_platform"] = round(
                        sum(
                            after[name] - before[name]
                            for name in after
                            if name not in ("stub", "bench")
                        )
                        * 1000
                        / n,
                        2,
                    )
            out[f"delay_{int(delay * 1000)}ms"] = by_path
    return out


async def _throughput(rig: Rig, delay: float, peak: dict[str, float]) -> dict[str, Any]:
    async def sample() -> None:
        while True:
            for name, mb in rig.rss_mb().items():
                peak[name] = max(peak.get(name, 0.0), mb)
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    try:
        return await loadgen.step_up(
            rig.send, delay, start_rps=2.0, factor=1.35, budget_s=STEP_BUDGET_S
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
