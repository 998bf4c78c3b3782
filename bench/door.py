"""The HTTP door against two other gateways, one stub, one load generator.

Tenantry's /v1/chat/completions (the api service, with the whole platform behind it:
tenant lookup, budget reservation, retrieval, leakage scans of prompt and answer,
metering, audit), LiteLLM's proxy and Portkey's gateway (npm @portkey-ai/gateway), each
pointed at the same Messages API stub and driven by bench/loadgen.py:

- added latency at concurrency 1 (wall time minus the stub's delay), non-streaming;
- time to first token of a streamed answer, at concurrency 1;
- the highest offered rate whose added p99 stays under 50 ms (open loop).

Peers live outside the project, so their pins never touch it (see bench/peer.py for
LiteLLM). Portkey: `npm install --prefix ~/.cache/tenantry/portkey @portkey-ai/gateway`
(or BENCH_PORTKEY_DIR). A peer that is not installed is reported as skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen
from bench.peer import MODEL, QUESTION, HttpPeer, LiteLLMProxy
from bench.rig import close_rig, open_rig, temp_dir
from bench.stub import StubProcess
from shared.messages.apikeys import ApiKeyIssued, IssueApiKey
from shared.ops import OpsClient

TENANTS = 10  # keys spread over tenants so no one tenant's rate limit is what is measured
TTFT_REQUESTS = 50


class PortkeyGateway(HttpPeer):
    name = "portkey-gateway"
    path = "/v1/chat/completions"

    @staticmethod
    def script() -> Path | None:
        root = Path(os.environ.get("BENCH_PORTKEY_DIR") or Path.home() / ".cache/tenantry/portkey")
        found = root / "node_modules/@portkey-ai/gateway/build/start-server.js"
        return found if found.exists() and shutil.which("node") else None

    def command(self) -> list[str]:
        script = self.script()
        assert script is not None
        return ["node", str(script), f"--port={self.port}", "--headless"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODE_ENV": "production"}

    def headers(self) -> dict[str, str]:
        return {
            "x-portkey-provider": "anthropic",
            "x-portkey-custom-host": f"{self.stub_url}/v1",
            "authorization": "Bearer sk-ant-bench-stub",
        }


def chat_body(i: int, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": f"{QUESTION} (#{i})"}],
    }
    if stream:
        body["stream"] = True
    return body


async def ttft(
    client: httpx.AsyncClient, path: str, headers: Callable[[int], dict[str, str]]
) -> dict[str, float]:
    """Concurrency 1, streamed: ms from sending to the first content delta."""
    firsts: list[float] = []
    for i in range(TTFT_REQUESTS):
        started = time.perf_counter()
        async with client.stream("POST", path, json=chat_body(i, True), headers=headers(i)) as r:
            if r.status_code != 200:
                await r.aread()
                continue
            first = None
            async for line in r.aiter_lines():  # read to the end, as a client would
                if first is None and _has_text(line):
                    first = (time.perf_counter() - started) * 1000
            if first is not None:
                firsts.append(first)
    if not firsts:
        return {"failed_streams": float(TTFT_REQUESTS)}
    return {**loadgen.percentiles(firsts), "failed_streams": float(TTFT_REQUESTS - len(firsts))}


def _has_text(line: str) -> bool:
    """An OpenAI stream chunk carrying answer text."""
    if not line.startswith("data:") or line.endswith("[DONE]"):
        return False
    try:
        choices = json.loads(line[5:]).get("choices") or []
    except ValueError:
        return False
    return any((c.get("delta") or {}).get("content") for c in choices)


async def measure(
    base_url: str, path: str, headers: Callable[[int], dict[str, str]], stub: StubProcess
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def send(i: int) -> bool:
            response = await client.post(path, json=chat_body(i), headers=headers(i))
            return response.status_code == 200

        await asyncio.to_thread(stub.set_delay, 0.0)
        return {
            "concurrency1_added_ms": await loadgen.sequential(send, 200, 0.0),
            "ttft_ms": await ttft(client, path, headers),
            "throughput": await loadgen.step_up(send, 0.0, start_rps=10, factor=1.4, budget_s=60),
        }


async def tenantry(results: dict[str, Any]) -> None:
    with temp_dir() as tmp:
        rig = await open_rig(Path(tmp), tenants=TENANTS, replicas=1, delay_s=0.0)
        try:
            user, password = rig.platform.ops_credentials
            keys = []
            async with OpsClient(rig.platform.nats_url, user=user, password=password) as ops:
                for t in rig.tenants:
                    issued = await ops.call(
                        "access", "key_issue", IssueApiKey(tenant_id=t.tenant_id), ApiKeyIssued
                    )
                    keys.append(issued.key)

            def headers(i: int) -> dict[str, str]:
                return {"authorization": f"Bearer {keys[abs(i) % len(keys)]}"}

            results["tenantry-http-door"] = await measure(
                rig.api_url, "/v1/chat/completions", headers, rig.stub
            )
        finally:
            await close_rig(rig)


def peer_results(peer_type: type[HttpPeer], stub: StubProcess) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-door-") as tmp:
        peer = peer_type(stub.url, 1, Path(tmp))
        try:
            peer.start()
            fixed = peer.headers()
            return asyncio.run(measure(peer.base_url, peer.path, lambda _: fixed, stub))
        except (RuntimeError, TimeoutError) as exc:
            return {"failed": str(exc)}
        finally:
            peer.stop()


def run(results_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"cores": os.cpu_count(), "stub_delay_ms": 0}
    asyncio.run(tenantry(results))
    stub = StubProcess(0.0)
    try:
        if LiteLLMProxy.binary() is None:
            results["litellm-proxy"] = {"skipped": "no litellm binary (see bench/peer.py)"}
        else:
            results["litellm-proxy"] = peer_results(LiteLLMProxy, stub)
        if PortkeyGateway.script() is None:
            results["portkey-gateway"] = {"skipped": "not installed (see bench/door.py)"}
        else:
            results["portkey-gateway"] = peer_results(PortkeyGateway, stub)
    finally:
        stub.stop()
    return results


