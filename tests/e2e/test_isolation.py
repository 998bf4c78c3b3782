"""Isolation on the bus, with nats-server's own permissions, as `make run` ships it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
import pytest_asyncio

from services.promptconfig.tiers import default_profile
from shared import subjects
from shared.client import TenantClient
from shared.launcher import Platform
from shared.messages.access import CredentialsIssued
from shared.messages.lifecycle import OnboardTenant
from shared.messages.retrieval import Document
from shared.messages.tenants import Tier
from shared.ops import OpsClient

pytestmark = pytest.mark.e2e


async def onboard(platform: Platform, tid: str, name: str) -> CredentialsIssued:
    async with _ops(platform) as ops:
        saved = await ops.save_tenant(tid, default_profile(name, Tier.PRO))
        assert saved.ok, saved.error
        creds = await ops.issue_credentials(tid)
        assert creds.ok and creds.created and creds.password
        again = await ops.issue_credentials(tid)
        assert again.ok and not again.created and again.password == ""  # shown once
        return creds


def _ops(platform: Platform) -> OpsClient:
    user, password = platform.ops_credentials
    return OpsClient(platform.nats_url, user=user, password=password)


class Violations:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def record(self, err: Exception) -> None:
        self.seen.append(str(err))

    async def wait_for(self, fragment: str, timeout_s: float = 5.0) -> None:
        for _ in range(int(timeout_s / 0.05)):
            if any(fragment in s for s in self.seen):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no violation {fragment!r}; saw {self.seen}")


@pytest_asyncio.fixture(scope="module")
async def two_tenants(
    platform: Platform,
) -> AsyncIterator[tuple[str, CredentialsIssued, str, CredentialsIssued]]:
    suffix = uuid.uuid4().hex[:6]
    a, b = f"iso-a-{suffix}", f"iso-b-{suffix}"
    yield (
        a,
        await onboard(platform, a, "Alpha Analytics"),
        b,
        await onboard(platform, b, "Beta Bakery"),
    )


async def _connect_as(
    platform: Platform, tid: str, creds: CredentialsIssued, errors: Violations
) -> nats.NATS:
    return await nats.connect(
        platform.nats_url,
        user=creds.user,
        password=creds.password,
        inbox_prefix=creds.inbox_prefix,
        error_cb=errors.record,
        allow_reconnect=False,
    )


async def test_tenant_cannot_subscribe_to_others_or_internal_subjects(
    platform: Platform, two_tenants
) -> None:
    a, a_creds, b, _ = two_tenants
    errors = Violations()
    nc = await _connect_as(platform, a, a_creds, errors)
    try:
        for forbidden in (
            f"tenant.{b}.>",
            ">",
            subjects.completions(b),
            subjects.audit_event(a),
            "svc.>",
            "evt.>",
        ):
            await nc.subscribe(forbidden)
            await nc.flush()
            await errors.wait_for(f'subscription to "{forbidden}"')
    finally:
        await nc.close()


async def test_tenant_cannot_publish_to_others_or_internal_subjects(
    platform: Platform, two_tenants
) -> None:
    a, a_creds, b, _ = two_tenants
    errors = Violations()
    nc = await _connect_as(platform, a, a_creds, errors)
    try:
        for forbidden in (
            subjects.request(b),
            subjects.request_sync(b),
            subjects.ingest(b),
            subjects.service("llm", "invoke", a),
            subjects.audit_event(a),
            subjects.service("promptconfig", "upsert", a),
        ):
            await nc.publish(forbidden, b"{}")
            await nc.flush()
            await errors.wait_for(f'publish to "{forbidden}"')
    finally:
        await nc.close()


async def test_tenant_uses_its_own_subjects_and_revocation_is_immediate(
    platform: Platform, two_tenants
) -> None:
    a, a_creds, b, b_creds = two_tenants
    doc = Document(
        document_id="handbook", text="Alpha Analytics support hours are 9 to 5 on weekdays."
    )
    client = TenantClient(a, platform.nats_url, user=a_creds.user, password=a_creds.password)
    await client.connect()
    ingested = await client.ingest([doc])
    assert ingested.ok, ingested.error
    done = await client.ask("When are the support hours?")
    assert done.ok and "9 to 5" in done.text

    async with _ops(platform) as ops:
        revoked = await ops.revoke_credentials(a)
        assert revoked.ok and revoked.existed
    # The open connection is closed by the server, and the credentials no longer work.
    for _ in range(100):
        if client.nc.is_closed or not client.nc.is_connected:
            break
        await asyncio.sleep(0.05)
    assert client.nc.is_closed or not client.nc.is_connected
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            platform.nats_url,
            user=a_creds.user,
            password=a_creds.password,
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )
    # Tenant B is untouched.
    async with TenantClient(
        b, platform.nats_url, user=b_creds.user, password=b_creds.password
    ) as other:
        assert (await other.ask("hello", top_k=0)).ok


async def test_anonymous_and_wrong_passwords_are_refused(platform: Platform, two_tenants) -> None:
    *_, b_creds = two_tenants
    for kwargs in (
        {},
        {"user": b_creds.user, "password": "wrong"},
        {"user": "ops", "password": "guess"},
    ):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(
                platform.nats_url, allow_reconnect=False, max_reconnect_attempts=0, **kwargs
            )


async def test_offboarding_locks_the_tenant_out_and_removes_its_data(platform: Platform) -> None:
    tid = f"leaving-{uuid.uuid4().hex[:6]}"
    async with _ops(platform) as ops:
        done = await ops.onboard(OnboardTenant(tenant_id=tid, name="Leaving Ltd", tier=Tier.FREE))
        assert done.ok and done.created and done.password
    client = TenantClient(tid, platform.nats_url, user=done.user, password=done.password)
    await client.connect()
    ingested = await client.ingest(
        [Document(document_id="memo", text="Leaving Ltd closes on Friday.")]
    )
    assert ingested.ok and ingested.chunks == 1
    async with _ops(platform) as ops:
        receipt = await ops.offboard(tid)
    assert receipt.ok and receipt.removed["credentials"] == 1 and receipt.removed["chunks"] == 1
    for _ in range(100):
        if not client.nc.is_connected:
            break
        await asyncio.sleep(0.05)
    assert not client.nc.is_connected
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            platform.nats_url,
            user=done.user,
            password=done.password,
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )


async def test_tenants_onboarded_at_once_can_all_log_in(platform: Platform) -> None:
    """Every issue rewrites the server's users from the stored list: two issues at once
    must not let the one that read the list first write last and drop the other's user
    (the pipeline bench onboards 100 tenants at once and once saw one refused)."""
    suffix = uuid.uuid4().hex[:6]
    tids = [f"burst-{n}-{suffix}" for n in range(8)]
    async with _ops(platform) as ops:
        for tid in tids:
            saved = await ops.save_tenant(tid, default_profile(f"Burst {tid}", Tier.FREE))
            assert saved.ok, saved.error
        issued = await asyncio.gather(*(ops.issue_credentials(tid) for tid in tids))
    assert all(creds.ok and creds.created for creds in issued)
    refused = []
    for tid, creds in zip(tids, issued, strict=True):
        try:
            nc = await _connect_as(platform, tid, creds, Violations())
        except nats.errors.Error:
            refused.append(tid)
        else:
            await nc.close()
    assert refused == []
