"""`tenantry audit …`: query, export and verify a tenant's audit trail (over the bus)."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.table import Table

from shared.cli.common import (
    JsonOpt,
    TenantOpt,
    add_row,
    check,
    console,
    note,
    ops_client,
    print_json,
    run,
    valid_tenant,
)
from shared.messages.audit import AuditEventType, AuditRow

audit = typer.Typer(help="Query, export and verify a tenant's audit trail.", no_args_is_help=True)

TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]
# --since/--until, as QueryAudit and the README name them; --from/--to kept as aliases
# for scripts written against the first CLI.
SinceOpt = Annotated[
    datetime | None,
    typer.Option(
        "--since", "--from", formats=TIME_FORMATS, help="Inclusive start (UTC if no zone)."
    ),
]
UntilOpt = Annotated[
    datetime | None,
    typer.Option("--until", "--to", formats=TIME_FORMATS, help="Exclusive end (UTC if no zone)."),
]
# Export columns: every AuditRow field, in the model's order.
CSV_COLUMNS = list(AuditRow.model_fields)


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@audit.command("query")
def audit_query(
    tenant: TenantOpt,
    event_type: Annotated[
        AuditEventType | None, typer.Option("--type", help="Only events of this type.")
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many rows.")] = 50,
    request: Annotated[str, typer.Option("--request", help="One request's trail.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Show a tenant's newest audit events, by type, time range or request id."""
    tenant = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            page = check(await ops.audit_query(tenant, event_type, since, until, limit, request))
        if as_json:
            print_json(
                {"total": page.total, "rows": [r.model_dump(mode="json") for r in page.rows]}
            )
            return
        table = Table(title=f"{tenant} audit ({len(page.rows)} of {page.total})")
        for col in ("time", "type", "service", "action", "actor", "status", "error"):
            table.add_column(col, overflow="fold")
        for row in page.rows:
            add_row(
                table,
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
    """Write rows as they arrive (one page in memory at a time). Returns the row count.

    Nothing is written until the first page has arrived: an export that fails at once
    (service down, bad tenant) leaves its output empty, not a lone CSV header."""
    count = 0
    if fmt is ExportFormat.CSV:
        # csv.writer quotes commas, quotes and newlines; QUOTE_MINIMAL round-trips.
        writer = csv.writer(out)
        rows = await _started(rows)
        writer.writerow(CSV_COLUMNS)
        async for row in rows:
            writer.writerow(csv_record(row))
            count += 1
    else:
        async for row in rows:
            out.write(row.model_dump_json() + "\n")
            count += 1
    return count


async def _started(rows: AsyncIterator[AuditRow]) -> AsyncIterator[AuditRow]:
    """The same rows, with the first one already fetched (so its errors come first)."""
    try:
        first = await anext(rows)
    except StopAsyncIteration:
        return _rows()

    async def chained() -> AsyncIterator[AuditRow]:
        yield first
        async for row in rows:
            yield row

    return chained()


async def _rows(*rows: AuditRow) -> AsyncIterator[AuditRow]:
    for row in rows:
        yield row


@audit.command("export")
def audit_export(
    tenant: TenantOpt,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl (byte-faithful) or csv.")
    ] = ExportFormat.JSONL,
    since: SinceOpt = None,
    until: UntilOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="File; stdout if unset.")
    ] = None,
) -> None:
    """Export a tenant's audit trail, oldest first, streamed page by page."""
    tenant = valid_tenant(tenant)

    async def go(target: IO[str]) -> int:
        async with ops_client() as ops:
            return await write_export(ops.audit_export(tenant, since, until), fmt, target)

    if out is None:
        run(go(sys.stdout))
        return
    # Written beside the target and renamed when complete: a failed export leaves no
    # half-written file that looks like a whole one. newline="": csv writes its own.
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as target:
            count = run(go(target))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    note(f"exported {count} rows to {out}")


@audit.command("verify")
def audit_verify(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Check the tenant's hash chain; name every edited, deleted or reordered row.

    Exit code 2 when the chain is broken.
    """
    tenant = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            report = check(await ops.audit_verify(tenant))
        if as_json:
            print_json(report)
            if not report.intact:
                raise typer.Exit(2)
            return
        span = f"rows {report.first_seq}-{report.last_seq}" if report.rows else "no rows"
        if report.intact:
            console.print(f"[green]intact[/green]: {tenant} chain, {report.rows} rows ({span})")
            return
        console.print(f"[red]BROKEN[/red]: {tenant} chain, {report.rows} rows ({span})")
        for issue in report.issues:
            console.print(f"  {issue.kind.value}: {issue.message}", markup=False)
        if report.truncated:
            console.print("  … more issues not listed")
        raise typer.Exit(2)

    run(go())
