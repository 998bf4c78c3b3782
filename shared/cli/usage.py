"""`tenantry usage`: a tenant's spend. `usage` reads the cost record (audit's ClickHouse,
by model and by day); `usage totals` reads metering's live view of the budget period
(settled spend plus what calls in flight hold)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from shared.cli.common import (
    JsonOpt,
    TenantOpt,
    check,
    console,
    fail,
    ops_client,
    print_json,
    run,
    valid_tenant,
)
from shared.client_errors import TenantryError
from shared.messages.audit import UsageReport
from shared.messages.tenants import TenantConfig
from shared.money import format_usd

MonthOpt = Annotated[
    str | None, typer.Option("--month", help="YYYY-MM; the current month if unset.")
]

usage = typer.Typer(
    help="A tenant's spend: by model and day (`usage -t T`), or live totals (`usage totals`).",
    invoke_without_command=True,
)


@usage.callback(invoke_without_command=True)
def usage_report(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="Tenant id (for the report by model and day)."),
    ] = None,
    month: MonthOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a tenant's spend for a month against its budget, by model and by day."""
    if ctx.invoked_subcommand is not None:
        return
    if tenant is None:
        fail("missing option --tenant/-t", hint="usage: tenantry usage -t TENANT [--month YYYY-MM]")
    tid = valid_tenant(tenant)

    async def go() -> tuple[UsageReport, TenantConfig | None]:
        async with ops_client() as ops:
            report = check(await ops.usage(tid, month))
            # The budget lives in the tenant's config (promptconfig): shown when it answers.
            try:
                config = (await ops.get_tenant(tid)).config
            except TenantryError:
                config = None
        return report, config

    report, config = run(go())
    budget = config.limits.monthly_budget_nanousd if config is not None else None
    if as_json:
        print_json({**report.model_dump(mode="json", exclude=_ENVELOPE), "budget_nanousd": budget})
        return
    table = Table(title=f"{tid} usage {report.month} by model")
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
    days = Table(title=f"{tid} usage {report.month} by day")
    for col in ("day", "model", "requests", "cost"):
        days.add_column(col)
    for day in report.by_day:
        days.add_row(day.day, day.model, str(day.requests), format_usd(day.cost_nanousd))
    console.print(days)
    if budget is not None:
        share = f" ({report.cost_nanousd * 100 / budget:.1f} %)" if budget else ""
        console.print(f"spent {format_usd(report.cost_nanousd)} of {format_usd(budget)}{share}")
    console.print(f"audit events (all time): {report.audit_events}")


_ENVELOPE = {"event_id", "request_id", "occurred_at", "schema_version", "error"}


@usage.command("totals")
def usage_totals(tenant: TenantOpt, month: MonthOpt = None, as_json: JsonOpt = False) -> None:
    """Live budget totals from metering: spent, held by calls in flight, budget, alerts."""
    tid = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            totals = check(await ops.metering_totals(tid, month))
        if as_json:
            print_json(totals)
            return
        table = Table(title=f"{tid} metering totals {totals.month} (live)")
        table.add_column("")
        table.add_column("value", justify="right")
        budget = totals.budget_nanousd
        table.add_row("spent", format_usd(totals.spent_nanousd))
        table.add_row("held by calls in flight", format_usd(totals.reserved_nanousd))
        table.add_row("budget", format_usd(budget) if budget is not None else "not seen yet")
        if budget:
            table.add_row("used", f"{totals.spent_nanousd * 100 / budget:.1f} %")
        table.add_row("requests settled", str(totals.requests_settled))
        table.add_row("requests charged", str(totals.requests_charged))
        table.add_row("calls in flight", str(totals.in_flight))
        table.add_row("alerts sent", ", ".join(f"{p} %" for p in totals.alerts_pct) or "none")
        console.print(table)

    run(go())
