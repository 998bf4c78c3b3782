"""The platform with the request path co-hosted in one process (TENANTRY_COHOST=critical)
and the other services alone, auth on: a real request per tenant is answered, the one
endpoint reports each hosted service, no service hits a permission it lacks, and every
process stops cleanly."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared import natsserver
from shared.cohost import scoped
from shared.demo import run_demo
from shared.demo_data import ACME
from shared.health import http_status
from shared.launcher import CRITICAL_PATH, Platform, parse_cohost

pytestmark = pytest.mark.e2e


async def readyz(port: int) -> dict[str, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", raw
    report: dict[str, object] = json.loads(body)
    return report


def test_the_request_path_in_one_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    http_port = natsserver.free_port()
    # The endpoint is a setting of the co-hosted services only (scoped to each), so the
    # services running alone open none and cannot clash on the port.
    endpoint = {
        scoped(name, var): value
        for name in CRITICAL_PATH
        for var, value in (
            ("TENANTRY_HTTP_PORT", str(http_port)),
            ("TENANTRY_HTTP_HOST", "127.0.0.1"),
        )
    }
    platform = Platform(
        data_dir=tmp_path_factory.mktemp("cohost"),
        nats_url=f"nats://127.0.0.1:{natsserver.free_port()}",
        cohost=parse_cohost("critical"),
        extra_env={
            "ANTHROPIC_API_KEY": "",
            "TENANTRY_API_PORT": str(natsserver.free_port()),
            **endpoint,
        },
    )
    (group,) = platform.cohost
    hosted = "+".join(group)
    try:
        platform.start(timeout_s=120)
        assert set(platform.pids()) == {"nats-server", hosted, "access", "audit", "finetune", "api"}

        results = asyncio.run(run_demo(platform.nats_url, *platform.ops_credentials))
        by_tenant = {r.tenant.tenant_id: r for r in results}
        assert "45 days" in by_tenant[ACME.tenant_id].completion.text
        for r in results:
            assert r.completion.model == "offline-extractive"
            assert r.usage.requests >= 1 and r.usage.audit_events >= 1

        report = asyncio.run(readyz(http_port))
        assert report["service"] == hosted
        services = report["services"]
        assert isinstance(services, dict) and set(services) == set(CRITICAL_PATH)
        assert all(s == {"state": "ready", "checks": {"nats": "ok"}} for s in services.values())
    finally:
        codes = platform.stop()
    assert {name: codes[name] for name in codes if name != "nats-server"} == {
        hosted: 0,
        "access": 0,
        "audit": 0,
        "finetune": 0,
        "api": 0,
    }
    with pytest.raises(OSError):
        asyncio.run(http_status(f"http://127.0.0.1:{http_port}/livez"))

    lines = (platform.log_dir / f"{hosted}.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    stopped = [e for e in events if e["event"] == "cohost.stopped"]
    assert len(stopped) == 1 and stopped[0]["failed"] == []
    assert {e["service"] for e in events if e["event"] == "service.stopped"} == set(CRITICAL_PATH)
    # Each hosted service connected as its own user (svc-<name>, least privilege): none
    # hit a permission nats-server refused, which a shared user would have.
    refused = [
        line
        for line in (platform.log_dir / "nats-server.log").read_text().splitlines()
        if "Violation" in line and "/user:svc-" in line
    ]
    assert not refused, refused[:10]
    auth = platform._auth
    assert auth is not None
    text = "\n".join(lines)
    for name in CRITICAL_PATH:
        assert auth.service_credentials(name)[1] not in text  # no password in a log line
