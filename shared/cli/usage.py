"""`tenantry usage`: a tenant's spend against its budget, by model and by day."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from shared.bus import ServiceCallError
from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.money import format_usd
from shared.tenancy import InvalidTenantId


def usage(
    tenant: TenantOpt,
    month: Annotated[str | None, typer.Option(help="YYYY-MM; current month if unset.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show a tenant's spend for a month against its budget, by model and by day."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            try:
                report = await ops.usage(tenant, month)
            except ServiceCallError as exc:
                fail(exc.info.message)
            # The budget lives in the tenant's config (promptconfig): shown when it answers.
            try:
                config = (await ops.get_tenant(tenant)).config
            except ServiceCallError:
                config = None
        if report.error:
            fail(report.error.message)
        table = Table(title=f"{tenant} usage {report.month} by model")
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
        days = Table(title=f"{tenant} usage {report.month} by day")
        for col in ("day", "model", "requests", "cost"):
            days.add_column(col)
        for day in report.by_day:
            days.add_row(day.day, day.model, str(day.requests), format_usd(day.cost_nanousd))
        console.print(days)
        if config is not None:
            budget = config.limits.monthly_budget_nanousd
            share = f" ({report.cost_nanousd * 100 / budget:.1f} %)" if budget else ""
            console.print(f"spent {format_usd(report.cost_nanousd)} of {format_usd(budget)}{share}")
        console.print(f"audit events (all time): {report.audit_events}")

    try:
        asyncio.run(go())
    except InvalidTenantId as exc:
        fail(str(exc))  # the message escapes the raw id
