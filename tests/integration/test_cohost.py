"""Two real services in one process on a real nats-server (shared.cohost.serve): each
answers on its own subjects, one endpoint reports both, a stop drains both, and a start
that fails names its service and leaves nothing running."""

from __future__ import annotations

import asyncio
import json

import pytest
from faststream.nats import NatsBroker
from prometheus_client.parser import text_string_to_metric_families

from shared import cohost, natsserver, subjects
from shared.health import Health, HealthGroup, State, http_status
from shared.service import Service

pytestmark = pytest.mark.integration


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def wait_ready(port: int) -> dict[str, object]:
    for _ in range(200):
        try:
            status, body = await get(port, "/readyz")
        except OSError:
            status, body = 0, b""
        if status == 200:
            report: dict[str, object] = json.loads(body)
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"never ready: {status} {body!r}")


async def test_two_services_in_one_process_answer_report_and_stop(
    nats_url: str, client_broker: NatsBroker
) -> None:
    port = natsserver.free_port()
    env = {"TENANTRY_NATS_URL": nats_url, "TENANTRY_HTTP_PORT": str(port)}
    env["TENANTRY_HTTP_HOST"] = "127.0.0.1"
    services = cohost.build(("promptconfig", "metering"), env)
    stop = asyncio.Event()
    serving = asyncio.create_task(cohost.serve(services, stop))
    try:
        report = await wait_ready(port)
        assert report["service"] == "promptconfig+metering"
        assert report["services"] == {
            "promptconfig": {"state": "ready", "checks": {"nats": "ok"}},
            "metering": {"state": "ready", "checks": {"nats": "ok"}},
        }
        # Each is its own unit: its own connection, answering on its own subjects.
        for name in ("promptconfig", "metering"):
            reply = await client_broker.connection.request(subjects.health(name), b"", timeout=5)
            assert reply.data == name.encode()
        first, second = (s.broker.connection for s in services)
        assert first is not second and first.client_id != second.client_id

        status, body = await get(port, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        handled = {
            s.labels["service"]
            for s in families["tenantry_handler_seconds"].samples
            if s.name.endswith("_count") and s.labels["handler"].endswith(".health")
        }
        assert handled == {"promptconfig", "metering"}
    finally:
        stop.set()
        code = await asyncio.wait_for(serving, 30)
    assert code == 0
    for service in services:
        assert not connected(service)
        assert not any(s.running for s in service.broker.subscribers)
    with pytest.raises(OSError):  # the endpoint went with them
        await http_status(f"http://127.0.0.1:{port}/livez")


def connected(service: Service) -> bool:
    try:
        return bool(service.broker.connection.is_connected)
    except Exception:  # FastStream raises when never connected
        return False


async def test_a_failed_start_names_its_service_and_stops_the_others(nats_url: str) -> None:
    async def broken() -> None:
        raise RuntimeError("the store is not there")

    env = {"TENANTRY_NATS_URL": nats_url}
    promptconfig, metering = cohost.build(("promptconfig", "metering"), env)
    metering.on_start.append(broken)
    group = HealthGroup([Health.of(promptconfig), Health.of(metering)])
    contexts = {s.name: cohost._context(s.name) for s in (promptconfig, metering)}
    try:
        with pytest.raises(cohost.StartFailed) as failed:
            await cohost.start_all([promptconfig, metering], group, contexts)
        assert failed.value.service == "metering"
        assert failed.value.reason == "RuntimeError: the store is not there"
        assert group.members[1].state is State.STARTING
    finally:
        await cohost.stop_all([promptconfig, metering], contexts)

    # serve() does the same, stops what had started, and exits 1.
    promptconfig, metering = cohost.build(("promptconfig", "metering"), env)
    metering.on_start.append(broken)
    assert await asyncio.wait_for(cohost.serve([promptconfig, metering]), 30) == 1
    assert not connected(promptconfig) and not connected(metering)
