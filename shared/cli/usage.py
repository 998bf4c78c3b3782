"""`tenantry usage`: a tenant's spend against its budget."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.money import format_usd


def usage(
    tenant: TenantOpt,
    month: Annotated[str | None, typer.Option(help="YYYY-MM; current month if unset.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show a tenant's spend for a month, by model."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            report = await ops.usage(tenant, month)
        if report.error:
            fail(report.error.message)
        table = Table(title=f"{tenant} usage {report.month}")
        for col in ("model", "requests", "input tokens", "output tokens", "cost"):
            table.add_column(col)
        for row in report.by_model:
            table.add_row(
                row.model,
                str(row.requests),
                str(row.input_tokens),
                str(row.output_tokens),
                format_usd(row.cost_nanousd),
            )
        table.add_row("total", str(report.requests), "", "", format_usd(report.cost_nanousd))
        console.print(table)
        console.print(f"audit events (all time): {report.audit_events}")

    asyncio.run(go())
