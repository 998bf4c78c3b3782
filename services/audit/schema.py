"""The ClickHouse schema: numbered deploy/clickhouse/*.sql files, applied in order, then TTLs.

Plain functions over a run-one-statement callable, so they run the same against chDB,
a server, or a list in a unit test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from services.audit.rows import COST_TABLE, DATABASE

_NUMBERED = re.compile(r"^\d{3}_[a-z0-9_]+\.sql$")


class SchemaError(RuntimeError):
    pass


def schema_files(schema_dir: Path) -> list[Path]:
    files = sorted(p for p in schema_dir.iterdir() if _NUMBERED.match(p.name))
    if not files:
        raise SchemaError(f"no NNN_name.sql files in {schema_dir}")
    return files


def split_statements(sql: str) -> list[str]:
    """Split a file on `;`, ignoring `--` comments and semicolons inside quotes."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            current.append(ch)
            if ch == "\\" and i + 1 < len(sql):
                current.append(sql[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'`\"":
            quote = ch
            current.append(ch)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def ttl_statement(table: str, days: int) -> str:
    # DDL cannot take bind parameters; `days` is a validated int from settings, and the
    # table comes from this module's constants, never from a message.
    return f"ALTER TABLE {DATABASE}.{table} MODIFY TTL occurred_at + INTERVAL {int(days)} DAY"


def needs_ttl_change(engine_full: str, days: int) -> bool:
    """engine_full shows the TTL normalised, e.g. `TTL occurred_at + toIntervalDay(365)`."""
    return f"toIntervalDay({int(days)})" not in engine_full


def apply(
    run: Callable[[str], None],
    engine_full: Callable[[str], str],
    schema_dir: Path,
    retention_days: dict[str, int],
) -> list[str]:
    """Apply every schema statement, then any TTL that differs. Returns what it ran."""
    ran: list[str] = []
    for path in schema_files(schema_dir):
        for statement in split_statements(path.read_text(encoding="utf-8")):
            run(statement)
            ran.append(statement)
    for table, days in retention_days.items():
        # audit_events keeps its per-row TTL (retention_days column): a table-wide
        # MODIFY TTL would replace it, so only cost_events is managed here.
        if table != COST_TABLE:
            raise SchemaError(f"no table-wide retention for table {table!r}")
        if needs_ttl_change(engine_full(table), days):
            statement = ttl_statement(table, days)
            run(statement)
            ran.append(statement)
    return ran
