"""Each compose service's command, run as a process with the environment and files
compose gives it, against local stand-ins for compose's servers: nats-server from the
wheel (with the users file `provision` wrote), chDB for ClickHouse, Qdrant local mode.
Then a real request goes through all of them, and every health endpoint answers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared import natsserver
from shared.demo import run_demo
from shared.launcher import SERVICES
from shared.provision import provision
from tests.support import compose
from tests.support.otlp import OtlpReceiver

pytestmark = pytest.mark.e2e

MODEL = compose.load()


def http(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


@dataclass
class ComposeLike:
    nats_url: str
    ops: tuple[str, str]
    http_ports: dict[str, int]
    envs: dict[str, dict[str, str]]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path = Path()
    traces: OtlpReceiver | None = None


def local_env(
    service: compose.ComposeService, root: Path, nats_url: str, http_port: int
) -> dict[str, str]:
    """compose's environment with the servers' host names pointed at local stand-ins."""
    volumes = {"platform-secrets": root / "state" / "secrets", "nats-auth": root / "state" / "nats"}
    env = {}
    for key, value in service.environment.items():
        host = service.host_path(value, volumes) if value.startswith("/") else None
        env[key] = str(host) if host is not None else value
    assert env.pop("TENANTRY_NATS_URL") == "nats://nats:4222"
    env["TENANTRY_NATS_URL"] = nats_url
    assert env["TENANTRY_HTTP_PORT"] == "8080"
    env["TENANTRY_HTTP_PORT"] = str(http_port)
    env["TENANTRY_HTTP_HOST"] = "127.0.0.1"
    # Any other port a service listens on (e.g. the HTTP door's) gets a free loopback one
    # here: this machine is shared, and tests listen on 127.0.0.1 only.
    for key in [k for k in env if k.endswith("_PORT") and k != "TENANTRY_HTTP_PORT"]:
        env[key] = str(natsserver.free_port())
        host = key.removesuffix("_PORT") + "_HOST"
        if host in env:
            env[host] = "127.0.0.1"
    env["TENANTRY_DATA_DIR"] = str(root / "data" / service.name)
    if "TENANTRY_QDRANT_URL" in env:
        assert env.pop("TENANTRY_QDRANT_URL") == "http://qdrant:6333"
        env["TENANTRY_QDRANT_PATH"] = str(root / "qdrant")
    if "TENANTRY_CLICKHOUSE_DSN" in env:
        assert env["TENANTRY_CLICKHOUSE_DSN"].startswith("http://tenantry@clickhouse:8123/")
        env["TENANTRY_CLICKHOUSE_DSN"] = f"chdb://{root / 'clickhouse'}"
    if env.get("TENANTRY_SCHEMA_DIR") == "/app/deploy/clickhouse":  # the image's layout
        env["TENANTRY_SCHEMA_DIR"] = str(compose.ROOT / "deploy" / "clickhouse")
    for key, value in env.items():
        assert "nats:4222" not in value and "qdrant:" not in value and "@clickhouse" not in value
    # What a container has besides: a PATH, and the image's working directory on sys.path.
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    env["PYTHONPATH"] = str(compose.ROOT)
    return env


@pytest.fixture(scope="module")
def traces() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, traces: OtlpReceiver) -> Iterator[ComposeLike]:
    root = tmp_path_factory.mktemp("compose-like")
    # As `OTEL_EXPORTER_OTLP_ENDPOINT=... docker compose up` would: a collector's address.
    model = compose.load({"OTEL_EXPORTER_OTLP_ENDPOINT": traces.endpoint})
    auth = provision(root / "state", SERVICES)  # the `provision` service, minus chown
    port = natsserver.free_port()
    logs = root / "logs"
    logs.mkdir()
    nats_proc, _ = natsserver.start(
        root / "nats-data",
        port=port,
        config_file=auth.config_file,
        pid_file=auth.pid_file,
        log_file=logs / "nats-server.log",
    )
    nats_url = f"nats://127.0.0.1:{port}"
    platform = compose.platform_services(model)
    ports = {name: natsserver.free_port() for name in platform}
    running = ComposeLike(
        nats_url,
        auth.ops_credentials,
        ports,
        {n: local_env(s, root, nats_url, ports[n]) for n, s in platform.items()},
        logs=logs,
        traces=traces,
    )
    try:
        # compose's order: every service but the gateway, then the gateway.
        for name in sorted(platform, key=lambda n: n == "gateway"):
            command = platform[name].command
            assert command[0] == "python"
            out = open(logs / f"{name}.log", "ab")
            running.procs[name] = subprocess.Popen(
                [sys.executable, *command[1:]],
                env=running.envs[name],
                cwd=root,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 120
        for name, proc in running.procs.items():
            while True:
                assert proc.poll() is None, (name, (logs / f"{name}.log").read_text()[-3000:])
                try:
                    if http(ports[name], "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{name} not ready"
                time.sleep(0.2)
        yield running
    finally:
        for proc in running.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in running.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats_proc.terminate()
        nats_proc.wait(timeout=10)


async def test_a_request_is_answered_through_every_compose_service(stack: ComposeLike) -> None:
    results = await run_demo(stack.nats_url, *stack.ops)
    assert len(results) == 2
    for result in results:
        assert result.completion.text and result.completion.model == "offline-extractive"
        assert result.usage.requests >= 1 and result.usage.audit_events >= 1
    assert all(p.poll() is None for p in stack.procs.values())


async def test_one_trace_follows_a_request_through_every_service(stack: ComposeLike) -> None:
    assert stack.traces is not None
    before = {s.trace_id for s in stack.traces.snapshot()}
    results = await run_demo(stack.nats_url, *stack.ops)
    assert len(results) == 2
    wanted = {"gateway", "metering", "retrieval", "leakage", "llm"}
    deadline = time.monotonic() + 30  # the batch exporter sends every 5 s
    while True:
        by_trace: dict[str, set[str]] = {}
        for span in stack.traces.snapshot():
            if span.trace_id not in before:
                by_trace.setdefault(span.trace_id, set()).add(span.service)
        complete = [
            t for t, services in by_trace.items() if {f"tenantry-{w}" for w in wanted} <= services
        ]
        if complete or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert complete, {t: sorted(s) for t, s in by_trace.items()}
    spans = [s for s in stack.traces.snapshot() if s.trace_id == complete[0]]
    # Span names carry subject patterns, never a tenant id.
    assert all("acme" not in s.name and "globex" not in s.name for s in spans), spans
    assert any(s.name.startswith("svc.llm.invoke.*") for s in spans), spans


def test_health_endpoints_report_ready_live_and_metrics(stack: ComposeLike) -> None:
    for name, port in stack.http_ports.items():
        status, body = http(port, "/readyz")
        report = json.loads(body)
        assert status == 200 and report["service"] == name, report
        assert report["checks"]["nats"] == "ok"
        status, body = http(port, "/livez")
        assert status == 200, body
        status, body = http(port, "/metrics")
        assert status == 200 and b"tenantry_" in body
        assert http(port, "/nope")[0] == 404
    # audit handles events in batches (many tenants each): timed per batch, no tenant series.
    batch = 'tenantry_handler_seconds_count{handler="evt.*.audit",outcome="ok"'
    body = http(stack.http_ports["audit"], "/metrics")[1].decode()
    if batch not in body:
        # Run on its own, nothing has reached audit yet: one demo's worth of traffic.
        asyncio.run(run_demo(stack.nats_url, *stack.ops))
        deadline = time.monotonic() + 20
        while batch not in body and time.monotonic() < deadline:
            time.sleep(0.5)
            body = http(stack.http_ports["audit"], "/metrics")[1].decode()
    assert batch in body, body
    assert 'subject="evt.*.audit"' not in body
    gateway = http(stack.http_ports["gateway"], "/metrics")[1].decode()
    assert 'tenant="acme"' in gateway and 'handler="intake.*.request"' in gateway


def test_compose_healthcheck_command_passes(stack: ComposeLike) -> None:
    for name in ("gateway", "audit"):
        test = MODEL["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python"
        done = subprocess.run(
            [sys.executable, *test[2:]],
            env=stack.envs[name],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
