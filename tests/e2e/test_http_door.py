"""The HTTP door as `make run` ships it: its own least-privilege NATS user, the tenant's
key, the official SDKs, streaming included (the e2e fixture fails on any permission
violation a service hits)."""

from __future__ import annotations

import uuid

import anthropic
import openai
import pytest

from shared.client import TenantClient
from shared.launcher import Platform
from shared.messages.apikeys import ApiKeyIssued, ApiKeyRevoked, IssueApiKey, RevokeApiKey
from shared.messages.retrieval import Document
from tests.e2e.test_isolation import _ops, onboard

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-5"


async def test_sdks_through_the_http_door_with_a_tenants_key(platform: Platform) -> None:
    tid = f"door-{uuid.uuid4().hex[:6]}"
    creds = await onboard(platform, tid, "Door Supplies")
    async with TenantClient(tid, platform.nats_url, user=creds.user, password=creds.password) as c:
        doc = Document(document_id="faq", text="Door Supplies ships hinges within 3 working days.")
        assert (await c.ingest([doc])).ok
    async with _ops(platform) as ops:
        issued = await ops.call("access", "key_issue", IssueApiKey(tenant_id=tid), ApiKeyIssued)
    assert issued.error is None and issued.key
    url = f"http://127.0.0.1:{platform.extra_env['TENANTRY_API_PORT']}"
    ask = [{"role": "user", "content": "How fast do you ship hinges?"}]

    client = anthropic.AsyncAnthropic(api_key=issued.key, base_url=url, max_retries=0)
    message = await client.messages.create(model=MODEL, max_tokens=200, messages=ask)
    assert "3 working days" in message.content[0].text
    async with client.messages.stream(model=MODEL, max_tokens=200, messages=ask) as stream:
        streamed = "".join([t async for t in stream.text_stream])
    assert "3 working days" in streamed

    oai = openai.AsyncOpenAI(api_key=issued.key, base_url=f"{url}/v1", max_retries=0)
    done = await oai.chat.completions.create(model=MODEL, messages=ask)  # type: ignore[arg-type]
    assert "3 working days" in (done.choices[0].message.content or "")

    async with _ops(platform) as ops:
        revoked = await ops.call(
            "access", "key_revoke", RevokeApiKey(tenant_id=tid, key_id=issued.key_id), ApiKeyRevoked
        )
    assert revoked.existed
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(model=MODEL, max_tokens=20, messages=ask)
