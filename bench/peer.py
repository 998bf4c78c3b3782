"""A peer: a Python LLM gateway over HTTP, against the same stub, under the same generator.

Adding another peer means one more `HttpPeer` subclass: how to start it pointed at the
stub's URL, and what one request looks like. The load generator (bench/loadgen.py), the
stub (bench/stub.py) and the 50 ms added-p99 limit are shared with bench/pipeline.py.

LiteLLM's proxy (`litellm[proxy]` from PyPI, its anthropic provider pointed at the stub)
lives in its own virtualenv so its pins never touch the project's: create it with

    python3 -m venv ~/.cache/tenantry/peer-venv
    ~/.cache/tenantry/peer-venv/bin/pip install 'litellm[proxy]'

or set BENCH_LITELLM_BIN to a `litellm` executable. Without it, this module reports
"skipped" and why. LITELLM_LOCAL_MODEL_COST_MAP keeps it from fetching its price list.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen
from bench.stub import StubProcess

DELAYS_S = (0.0, 0.1)
WORKERS = (1, 2)
MODEL = "claude-haiku-4-5"
QUESTION = "What is the refund window for orders shipped to Leeds last quarter?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpPeer:
    """One HTTP gateway process; subclasses say how to start it and what to POST."""

    name = "peer"
    path = "/"

    def __init__(self, stub_url: str, workers: int, work_dir: Path) -> None:
        self.stub_url, self.workers, self.work_dir = stub_url, workers, work_dir
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def body(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def ready_path(self) -> str:
        return "/"

    def headers(self) -> dict[str, str]:
        return {}

    def start(self, timeout_s: float = 120.0) -> None:
        log = open(self.work_dir / f"{self.name}.log", "ab")  # the child owns it
        self._proc = subprocess.Popen(  # noqa: S603
            self.command(), env=self.env(), stdout=log, stderr=log, cwd=self.work_dir
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.work_dir / self.name}.log")
            try:
                if httpx.get(self.base_url + self.ready_path(), timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} did not start within {timeout_s:g}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class LiteLLMProxy(HttpPeer):
    name = "litellm-proxy"
    path = "/v1/chat/completions"

    def __init__(self, stub_url: str, workers: int, work_dir: Path) -> None:
        super().__init__(stub_url, workers, work_dir)
        # It refuses to start unauthenticated (Tenantry runs with auth on too), and a
        # master key needs no database: it is compared, not looked up.
        self._key = f"sk-{secrets.token_hex(32)}"

    @staticmethod
    def binary() -> Path | None:
        # Outside the repository: `make clean` empties var/, and the venv is large.
        default = Path.home() / ".cache/tenantry/peer-venv/bin/litellm"
        found = os.environ.get("BENCH_LITELLM_BIN") or str(default)
        return Path(found) if Path(found).exists() else None

    def command(self) -> list[str]:
        config = self.work_dir / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: anthropic/{MODEL}\n"
            f"      api_base: {self.stub_url}\n"
            "      api_key: sk-ant-bench-stub\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        binary = self.binary()
        assert binary is not None
        return [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num_workers",
            str(self.workers),
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_MASTER_KEY": self._key,
            "LITELLM_LOG": "ERROR",
            "NO_DOCS": "True",
        }

    def ready_path(self) -> str:
        return "/health/liveliness"

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._key}"}

    def body(self, i: int) -> dict[str, Any]:
        return {
            "model": MODEL,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": f"{QUESTION} (#{i})"}],
        }


async def measure(peer: HttpPeer, stub: StubProcess) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=peer.base_url, headers=peer.headers(), limits=limits, timeout=30
    ) as client:

        async def send(i: int) -> bool:
            response = await client.post(peer.path, json=peer.body(i))
            return response.status_code == 200

        out: dict[str, Any] = {}
        for delay in DELAYS_S:
            await asyncio.to_thread(stub.set_delay, delay)
            label = f"delay_{int(delay * 1000)}ms"
            out[f"concurrency1_{label}"] = await loadgen.sequential(send, 200, delay)
            out[f"throughput_{label}"] = await loadgen.step_up(
                send, delay, start_rps=10, factor=1.4, budget_s=60
            )
        return out


def run(results_dir: Path) -> dict[str, Any]:
    if LiteLLMProxy.binary() is None:
        return {
            "peer": LiteLLMProxy.name,
            "skipped": "no litellm binary: create ~/.cache/tenantry/peer-venv (see bench/peer.py) "
            "or set BENCH_LITELLM_BIN",
        }
    results: dict[str, Any] = {"peer": LiteLLMProxy.name, "cores": os.cpu_count()}
    stub = StubProcess(0.0)
    try:
        for workers in WORKERS:
            with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
                peer = LiteLLMProxy(stub.url, workers, Path(tmp))
                try:
                    peer.start()
                    results[f"workers_{workers}"] = asyncio.run(measure(peer, stub))
                except (RuntimeError, TimeoutError) as exc:
                    log = Path(tmp) / f"{peer.name}.log"
                    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                    results[f"workers_{workers}"] = {"failed": str(exc), "log_tail": tail}
                finally:
                    peer.stop()
    finally:
        stub.stop()
    return results
