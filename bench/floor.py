"""The floor: what NATS itself costs on this machine, measured in the same run.

Against a plain nats-server from the same wheel (no auth, JetStream on, a temporary
folder): a request/reply round trip to a responder in *another process* (as every
service hop is), and an acked JetStream publish to a file-backed stream (as every
durable publish is). Concurrency 1, after a warm-up.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StorageType, StreamConfig

from bench.loadgen import percentiles
from shared import natsserver

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 2_000
PAYLOAD = b"x" * 512  # about the size of a small service message
SUBJECT = "bench.floor.echo"
IDLE_ROUNDS = 100
IDLE_GAP_S = 0.1


async def _measure(url: str) -> dict[str, Any]:
    nc = await nats.connect(url, name="bench-floor")
    try:
        for _ in range(100):  # warm-up, and waits until the echo process subscribed
            try:
                await nc.request(SUBJECT, PAYLOAD, timeout=1)
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.1)
        rtt = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            await nc.request(SUBJECT, PAYLOAD, timeout=1)
            rtt.append((time.perf_counter() - started) * 1000)
        # The same round trip after the machine sat idle for as long as a model call
        # takes (the 100 ms stub): what waking a sleeping process costs on this machine,
        # paid once per hop on the path after the model answers.
        after_idle = []
        for _ in range(IDLE_ROUNDS):
            await asyncio.sleep(IDLE_GAP_S)
            started = time.perf_counter()
            await nc.request(SUBJECT, PAYLOAD, timeout=1)
            after_idle.append((time.perf_counter() - started) * 1000)
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(name="BENCHFLOOR", subjects=["bench.floor.js"], storage=StorageType.FILE)
        )
        for _ in range(100):
            await js.publish("bench.floor.js", PAYLOAD)
        acked = []
        for i in range(ROUNDS):
            started = time.perf_counter()
            await js.publish("bench.floor.js", PAYLOAD, headers={"Nats-Msg-Id": f"m{i}"})
            acked.append((time.perf_counter() - started) * 1000)
    finally:
        await nc.close()
    return {
        "rounds": ROUNDS,
        "payload_bytes": len(PAYLOAD),
        "request_reply_ms": percentiles(rtt),
        "request_reply_after_idle_ms": {"idle_s": IDLE_GAP_S, **percentiles(after_idle)},
        "jetstream_publish_acked_ms": percentiles(acked),
    }


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        server, port = natsserver.start(Path(tmp) / "nats", log_file=Path(tmp) / "nats.log")
        url = f"nats://127.0.0.1:{port}"
        echo = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.floor", url], cwd=REPO, env=dict(os.environ)
        )
        try:
            return asyncio.run(_measure(url))
        finally:
            echo.terminate()
            echo.wait(timeout=10)
            server.terminate()
            server.wait(timeout=10)


async def _echo(url: str) -> None:
    nc = await nats.connect(url, name="bench-floor-echo")

    async def answer(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(SUBJECT, cb=answer)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_echo(sys.argv[1]))
