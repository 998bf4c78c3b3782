"""A crash inside the gateway still answers a sync request (no redelivery on that path)."""

from __future__ import annotations

import pytest

from services.gateway.app import make_service
from services.gateway.settings import GatewaySettings
from shared import subjects
from shared.messages.base import ErrorCode
from shared.messages.completions import CompletionPublished, CreateCompletion
from shared.messages.tenants import ResolveTenant, TenantResolved
from tests.support.bus import as_tenant
from tests.unit.test_gateway import FakePorts

pytestmark = pytest.mark.integration


class ExplodingPorts(FakePorts):
    async def resolve(self, msg: ResolveTenant) -> TenantResolved:
        raise RuntimeError("a bug, not bad input")


async def test_a_crash_on_the_sync_path_answers_internal_at_once(nats_url: str) -> None:
    gateway = make_service(GatewaySettings(nats_url=nats_url), ports=ExplodingPorts())
    await gateway.start()
    try:
        ask = CreateCompletion(tenant_id="crashco", question="hi")
        async with as_tenant(nats_url, "crashco") as nc:
            reply = await nc.request(
                subjects.request_sync("crashco"), ask.model_dump_json().encode(), timeout=5
            )
        done = CompletionPublished.model_validate_json(reply.data)
        assert done.error is not None and done.error.code is ErrorCode.INTERNAL
        assert done.request_id == ask.request_id and done.tenant_id == "crashco"
        assert "a bug" not in done.error.message  # exception text never reaches a client
    finally:
        await gateway.stop()
