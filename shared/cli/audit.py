"""`tenantry audit …`: query, export and verify a tenant's audit trail (over the bus)."""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import ExitStack
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from shared.bus import ServiceCallError
from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.messages.audit import AuditEventType, AuditRow
from shared.tenancy import InvalidTenantId

audit = typer.Typer(help="Query, export and verify a tenant's audit trail.", no_args_is_help=True)

TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]
FromOpt = Annotated[
    datetime | None,
    typer.Option("--from", formats=TIME_FORMATS, help="Inclusive start (UTC if no zone)."),
]
ToOpt = Annotated[
    datetime | None,
    typer.Option("--to", formats=TIME_FORMATS, help="Exclusive end (UTC if no zone)."),
]
# Export columns: every AuditRow field, in the model's order.
CSV_COLUMNS = list(AuditRow.model_fields)


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def run(work: Coroutine[Any, Any, None]) -> None:
    """Run one command; an unreachable or failing service is a clear error, not a trace."""
    try:
        asyncio.run(work)
    except ServiceCallError as exc:
        fail(exc.info.message)
    except InvalidTenantId as exc:
        fail(str(exc))  # the message escapes the raw id


@audit.command("query")
def audit_query(
    tenant: TenantOpt,
    event_type: Annotated[AuditEventType | None, typer.Option("--type")] = None,
    since: FromOpt = None,
    until: ToOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    request: Annotated[str, typer.Option("--request", help="One request's trail.")] = "",
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show a tenant's newest audit events, by type, time range or request id."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            page = await ops.audit_query(tenant, event_type, since, until, limit, request)
        if page.error:
            fail(page.error.message)
        table = Table(title=f"{tenant} audit ({len(page.rows)} of {page.total})")
        for col in ("time", "type", "service", "action", "actor", "status", "error"):
            table.add_column(col, overflow="fold")
        for row in page.rows:
            table.add_row(
                row.occurred_at.isoformat(timespec="seconds"),
                row.event_type,
                row.service,
                row.action,
                row.actor,
                row.status,
                row.error,
            )
        console.print(table)

    run(go())


# `show` predates `query`; kept so existing scripts keep working.
audit.command("show", hidden=True)(audit_query)


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"). Audit rows hold
# client-supplied text (user agents, actors, error messages), and CSV is the format
# people open in a spreadsheet, so such cells get a leading apostrophe there. JSONL is
# the byte-faithful export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_record(row: AuditRow) -> list[str]:
    values = row.model_dump(mode="json")
    return [spreadsheet_safe(str(values[c])) for c in CSV_COLUMNS]


async def write_export(rows: AsyncIterator[AuditRow], fmt: ExportFormat, out: IO[str]) -> int:
    """Write rows as they arrive (one page in memory at a time). Returns the row count."""
    count = 0
    if fmt is ExportFormat.CSV:
        # csv.writer quotes commas, quotes and newlines; QUOTE_MINIMAL round-trips.
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        async for row in rows:
            writer.writerow(csv_record(row))
            count += 1
    else:
        async for row in rows:
            out.write(row.model_dump_json() + "\n")
            count += 1
    return count


@audit.command("export")
def audit_export(
    tenant: TenantOpt,
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.JSONL,
    since: FromOpt = None,
    until: ToOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="File; stdout if unset.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Export a tenant's audit trail, oldest first, streamed page by page."""

    async def go() -> int:
        with ExitStack() as files:
            # newline="": the csv module writes its own line endings.
            target: IO[str] = sys.stdout
            if out:
                target = files.enter_context(out.open("w", encoding="utf-8", newline=""))
            async with ops_client(nats_url) as ops:
                return await write_export(ops.audit_export(tenant, since, until), fmt, target)

    try:
        count = asyncio.run(go())
    except ServiceCallError as exc:
        fail(exc.info.message)
    except InvalidTenantId as exc:
        fail(str(exc))
    if out:
        console.print(f"exported {count} rows to {out}")


@audit.command("verify")
def audit_verify(tenant: TenantOpt, nats_url: NatsUrl = DEFAULT_URL) -> None:
    """Check the tenant's hash chain; name every edited, deleted or reordered row."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            report = await ops.audit_verify(tenant)
        if report.error:
            fail(report.error.message)
        span = f"rows {report.first_seq}-{report.last_seq}" if report.rows else "no rows"
        if report.intact:
            console.print(f"[green]intact[/green]: {tenant} chain, {report.rows} rows ({span})")
            return
        console.print(f"[red]BROKEN[/red]: {tenant} chain, {report.rows} rows ({span})")
        for issue in report.issues:
            console.print(f"  {issue.kind.value}: {issue.message}")
        if report.truncated:
            console.print("  … more issues not listed")
        raise typer.Exit(2)

    run(go())
