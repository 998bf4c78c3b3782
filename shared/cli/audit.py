"""`tenantry audit …`: read a tenant's audit trail."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.messages.audit import AuditEventType

audit = typer.Typer(help="Read a tenant's audit trail.", no_args_is_help=True)


@audit.command("show")
def audit_show(
    tenant: TenantOpt,
    event_type: Annotated[AuditEventType | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show a tenant's newest audit events."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            page = await ops.audit(tenant, event_type, limit)
        if page.error:
            fail(page.error.message)
        table = Table(title=f"{tenant} audit ({len(page.rows)} of {page.total})")
        for col in ("time", "type", "service", "action", "status", "error"):
            table.add_column(col, overflow="fold")
        for row in page.rows:
            table.add_row(
                row.occurred_at.isoformat(timespec="seconds"),
                row.event_type,
                row.service,
                row.action,
                row.status,
                row.error,
            )
        console.print(table)

    asyncio.run(go())
