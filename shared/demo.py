"""The demo scenario behind `make run` / `make demo`: seed two tenants, ask, report."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from shared.client import TenantClient
from shared.demo_data import DEMO_TENANTS, DemoTenant
from shared.messages.audit import UsageReport
from shared.messages.completions import CompletionPublished
from shared.messages.lifecycle import OnboardTenant
from shared.ops import OpsClient


@dataclass
class DemoResult:
    tenant: DemoTenant
    completion: CompletionPublished
    seconds: float
    usage: UsageReport


class DemoFailed(RuntimeError):
    pass


async def run_demo(
    nats_url: str, ops_user: str | None = None, ops_password: str | None = None
) -> list[DemoResult]:
    """Each tenant's client connects with that tenant's own credentials."""
    async with OpsClient(nats_url, user=ops_user, password=ops_password) as ops:
        results = []
        for tenant in DEMO_TENANTS:
            onboarded = await ops.onboard(
                OnboardTenant(
                    tenant_id=tenant.tenant_id,
                    name=tenant.name,
                    tier=tenant.tier,
                    custom_instructions=tenant.instructions,
                    actor="demo",
                )
            )
            if onboarded.error:
                raise DemoFailed(f"onboarding {tenant.tenant_id}: {onboarded.error.message}")
            user, password = onboarded.user, onboarded.password
            if not onboarded.created:
                # Onboarded by an earlier run: its password was shown then, so rotate.
                creds = await ops.issue_credentials(tenant.tenant_id, rotate=True, actor="demo")
                if creds.error:
                    raise DemoFailed(f"credentials for {tenant.tenant_id}: {creds.error.message}")
                user, password = creds.user, creds.password
            before = await ops.usage(tenant.tenant_id)
            async with TenantClient(
                tenant.tenant_id, nats_url, user=user, password=password
            ) as client:
                ingested = await client.ingest(tenant.documents)
                if ingested.error:
                    raise DemoFailed(f"ingest for {tenant.tenant_id}: {ingested.error.message}")
                started = time.perf_counter()
                completion = await client.ask(tenant.question)
                seconds = time.perf_counter() - started
            if completion.error:
                raise DemoFailed(f"{tenant.tenant_id}: {completion.error.message}")
            usage = await _settled_usage(ops, tenant.tenant_id, before.requests + 1)
            results.append(DemoResult(tenant, completion, seconds, usage))
        return results


async def _settled_usage(
    ops: OpsClient, tenant_id: str, requests: int, timeout_s: float = 20.0
) -> UsageReport:
    """Cost events reach ClickHouse asynchronously (JetStream -> audit); wait until this
    request's cost is counted."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = await ops.usage(tenant_id)
        if report.error is None and report.requests >= requests and report.audit_events >= 1:
            return report
        if time.monotonic() > deadline:
            if report.error:
                raise DemoFailed(f"usage for {tenant_id}: {report.error.message}")
            return report
        await asyncio.sleep(0.2)
