"""The health endpoint reflects the service's real state and dependencies: a real service
on a real nats-server, a dependency that is down, a start not finished, a stop begun."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.promptconfig.app import make_service as promptconfig
from services.promptconfig.settings import PromptConfigSettings
from services.retrieval.settings import RetrievalSettings
from shared import subjects
from shared.health import Health, HealthServer, State, dependency_checks, http_status
from shared.metrics import ServiceMetrics, TenantLabels, subject_pattern, subject_tenant
from shared.service import Service

pytestmark = pytest.mark.integration


async def get(port: int, path: str) -> tuple[int, dict[str, object] | bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@pytest_asyncio.fixture
async def served(nats_url: str) -> AsyncIterator[tuple[Service, Health, HealthServer]]:
    service = promptconfig(PromptConfigSettings(nats_url=nats_url))
    metrics = ServiceMetrics(service.name)
    metrics.instrument(service)
    health = Health.of(service)
    server = HealthServer(health, metrics.exposition)
    await server.start("127.0.0.1", 0)
    try:
        yield service, health, server
    finally:
        await server.stop()


async def test_ready_only_once_started_and_connected(
    served: tuple[Service, Health, HealthServer],
) -> None:
    service, health, server = served
    # Starting: alive, not ready.
    assert (await get(server.port, "/livez"))[0] == 200
    status, report = await get(server.port, "/readyz")
    assert status == 503 and report == {"state": "starting", "service": "promptconfig"}

    await service.start()
    try:
        health.state = State.READY
        status, report = await get(server.port, "/readyz")
        assert status == 200, report
        assert isinstance(report, dict) and report["checks"] == {"nats": "ok"}
        await service.broker.connection.request(subjects.health("promptconfig"), b"", timeout=5)
        status, body = await get(server.port, "/metrics")
        assert status == 200 and isinstance(body, bytes)
        assert (
            b'tenantry_handler_seconds_count{handler="svc.promptconfig.health",'
            b'outcome="ok",service="promptconfig"} 1.0' in body
        ), body.decode()[:2000]

        # Draining: no new traffic, still alive.
        health.state = State.STOPPING
        assert (await get(server.port, "/readyz"))[0] == 503
        assert (await get(server.port, "/livez"))[0] == 200
        health.state = State.READY
    finally:
        await service.stop()
    # The connection is closed: not ready any more, whatever the state says.
    status, report = await get(server.port, "/readyz")
    assert status == 503 and isinstance(report, dict)
    assert report["checks"]["nats"] == "nats not connected"
    health.state = State.FAILED
    assert (await get(server.port, "/livez"))[0] == 503
    assert (await get(server.port, "/nope"))[0] == 404


async def test_a_dependency_that_is_down_makes_the_service_unready(nats_url: str) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = RetrievalSettings(nats_url=nats_url, qdrant_url=f"http://127.0.0.1:{port}")
    checks = dependency_checks(settings)
    assert set(checks) == {"qdrant"}
    with pytest.raises(Exception, match="qdrant unreachable"):
        await checks["qdrant"]()


async def test_a_dependency_that_answers_makes_the_check_pass() -> None:
    # A minimal HTTP server standing in for Qdrant's /readyz and ClickHouse's /ping.
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOk")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = RetrievalSettings(qdrant_url=f"http://127.0.0.1:{port}")
        await dependency_checks(settings)["qdrant"]()
        assert seen == [b"GET /readyz HTTP/1.0\r\n"]

        from services.audit.settings import AuditSettings

        audit = AuditSettings(
            clickhouse_dsn=f"http://tenantry@127.0.0.1:{port}/tenantry",
            clickhouse_password="Xk29s-real",
        )
        ping = dependency_checks(audit)
        await ping["clickhouse"]()
        assert seen[-1] == b"GET /ping HTTP/1.0\r\n"  # no credentials in the probe
        assert await http_status(f"http://127.0.0.1:{port}/x") == 200
    finally:
        server.close()
        await server.wait_closed()


def test_embedded_stores_need_no_outside_check(tmp_path: object) -> None:
    from services.audit.settings import AuditSettings

    assert dependency_checks(RetrievalSettings()) == {}
    assert dependency_checks(AuditSettings(data_dir=tmp_path)) == {}


def test_metric_labels_carry_no_tenant_or_request_ids() -> None:
    assert subject_pattern("svc.retrieval.search.acme") == "svc.retrieval.search.*"
    assert subject_pattern("tenant.acme.completion.r-123") == "tenant.*.completion.*"
    assert subject_pattern("tenant.acme.request.sync") == "tenant.*.request.sync"
    assert subject_pattern("evt.acme.audit") == "evt.*.audit"
    assert subject_pattern("_INBOX.abc.def") == "_INBOX.>"
    assert subject_pattern("$KV.tenantry-tenants.acme") == "$KV.tenantry-tenants.>"
    assert subject_pattern("svc.gateway.health") == "svc.gateway.health"
    assert subject_tenant("svc.llm.invoke.acme") == "acme"
    assert subject_tenant("svc.gateway.health") is None
    assert subject_tenant("tenant.BAD*.request") is None


def test_tenant_label_is_capped() -> None:
    labels = TenantLabels(limit=3)
    assert [labels(f"t{i}") for i in range(5)] == ["t0", "t1", "t2", "_other", "_other"]
    assert labels("t1") == "t1"


def test_observations_become_bounded_series() -> None:
    metrics = ServiceMetrics("retrieval", max_tenants=1)
    metrics.observe("svc.retrieval.search.acme", 0.003, ok=True)
    metrics.observe("svc.retrieval.search.globex", 0.2, ok=False)
    text = metrics.exposition()[0].decode()
    assert (
        'tenantry_handler_seconds_count{handler="svc.retrieval.search.*",outcome="ok",'
        'service="retrieval"} 1.0' in text
    )
    assert 'outcome="error"' in text and "globex" not in text
    assert 'tenant="acme"' in text and 'tenant="_other"' in text


def test_a_batch_is_timed_once_and_not_counted_per_tenant() -> None:
    metrics = ServiceMetrics("audit")
    metrics.observe("evt.acme.audit", 0.05, ok=True, per_tenant=False)
    text = metrics.exposition()[0].decode()
    assert 'handler="evt.*.audit"' in text and "acme" not in text
