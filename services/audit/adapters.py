"""The audit store: one interface, backed by ClickHouse through clickhouse-connect.

The DSN picks the engine: `chdb:///path` runs ClickHouse in-process (embedded mode),
`http(s)://...` talks to a server. chDB has only a synchronous client and one engine
per process, so every call runs in a worker thread behind one lock; the same
serialisation is harmless for a server (audit is a single writer with small batches).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from services.audit import schema
from services.audit.rows import (
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    COST_COLUMNS,
    COST_TABLE,
    DATABASE,
    Row,
)
from services.audit.settings import redacted_dsn
from shared.logging import get_logger

log = get_logger("tenantry.audit.store")


class AuditStore(Protocol):
    async def insert_audit(self, rows: Sequence[Row], token: str = "") -> None: ...

    async def insert_cost(self, rows: Sequence[Row], token: str = "") -> None: ...

    async def command(self, sql: str) -> None:
        """Run one administrative statement (OPTIMIZE in tests and benchmarks)."""

    async def select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a read-only query with bound parameters; rows as tuples."""

    async def close(self) -> None: ...


def _connect(dsn: str) -> Client:
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)


class ClickHouseStore:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, dsn: str, schema_dir: Path, retention_days: dict[str, int]
    ) -> ClickHouseStore:
        log.info("clickhouse.opening", dsn=redacted_dsn(dsn))
        client = await asyncio.to_thread(_connect, dsn)
        store = cls(client)
        try:
            ran = await store._run(
                schema.apply, store._command, store._engine_full, schema_dir, retention_days
            )
            await store._run(store._check_columns)
        except BaseException:
            await store.close()
            raise
        for statement in ran:
            if statement.startswith("ALTER TABLE"):
                # A retention change rewrites TTL info on existing parts: worth a log line.
                log.info("clickhouse.retention_changed", statement=statement)
        log.info("clickhouse.schema_applied", statements=len(ran))
        return store

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    def _command(self, sql: str) -> None:
        self._client.command(sql)

    def _check_columns(self) -> None:
        """Fail fast on tables made by an older build: CREATE IF NOT EXISTS keeps them,
        and every insert would then fail (and be dead-lettered) instead."""
        for table, columns in ((AUDIT_TABLE, AUDIT_COLUMNS), (COST_TABLE, COST_COLUMNS)):
            result = self._client.query(
                "SELECT name FROM system.columns WHERE database = {db:String} "
                "AND table = {table:String}",
                parameters={"db": DATABASE, "table": table},
            )
            missing = set(columns) - {str(r[0]) for r in result.result_rows}
            if missing:
                raise schema.SchemaError(
                    f"{DATABASE}.{table} predates this build (no {', '.join(sorted(missing))}): "
                    "migrate it, or recreate the embedded data folder"
                )

    def _engine_full(self, table: str) -> str:
        result = self._client.query(
            "SELECT engine_full FROM system.tables "
            "WHERE database = {db:String} AND name = {table:String}",
            parameters={"db": DATABASE, "table": table},
        )
        return str(result.result_rows[0][0]) if result.result_rows else ""

    async def insert_audit(self, rows: Sequence[Row], token: str = "") -> None:
        await self._insert(AUDIT_TABLE, AUDIT_COLUMNS, rows, token)

    async def insert_cost(self, rows: Sequence[Row], token: str = "") -> None:
        await self._insert(COST_TABLE, COST_COLUMNS, rows, token)

    async def command(self, sql: str) -> None:
        await self._run(self._command, sql)

    async def _insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Row], token: str
    ) -> None:
        # The token makes ClickHouse itself drop a replay of the very same insert
        # (non_replicated_deduplication_window in the table's SETTINGS).
        settings = {"insert_deduplication_token": token} if token else None
        if rows:
            await self._run(
                lambda: self._client.insert(
                    table,
                    list(rows),
                    column_names=list(columns),
                    database=DATABASE,
                    settings=settings,
                )
            )

    async def select(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        result = await self._run(lambda: self._client.query(sql, parameters=parameters))
        return [tuple(row) for row in result.result_rows]

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._client.close)
