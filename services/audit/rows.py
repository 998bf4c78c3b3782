"""Event -> ClickHouse row mapping for audit_events and cost_events. No I/O here.

Column tuples are listed once and used for both the insert and the row order, so a
schema change touches one list (plus deploy/clickhouse/). Nullable message fields
become empty strings: the tables have no Nullable columns (cheaper, simpler SQL).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.messages.audit import AuditRecorded
from shared.messages.metering import CostRecorded

DATABASE = "tenantry"
AUDIT_TABLE = "audit_events"
COST_TABLE = "cost_events"

# The columns the hash chain covers, in the canonical order (services/audit/chain.py).
AUDIT_CONTENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "request_id",
    "tenant_id",
    "occurred_at",
    "event_type",
    "service",
    "action",
    "resource_type",
    "resource_id",
    "status",
    "error",
    "actor",
    "client_ip",
    "user_agent",
    "details",
    "schema_version",
    "retention_days",
)

# What the writer adds: chain position and hashes, and the batch's insert time.
AUDIT_COLUMNS: tuple[str, ...] = (
    *AUDIT_CONTENT_COLUMNS,
    "chain_seq",
    "prev_hash",
    "row_hash",
    "recorded_at",
)

COST_COLUMNS: tuple[str, ...] = (
    "event_id",
    "request_id",
    "tenant_id",
    "occurred_at",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_nanousd",
    "price_version",
    "schema_version",
    "recorded_at",
)

Row = tuple[Any, ...]


def as_utc(value: datetime) -> datetime:
    """Messages should carry aware UTC times; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_millis(value: datetime) -> datetime:
    """UTC, truncated to the millisecond: what DateTime64(3) stores. The chain hashes the
    stored value, so it must be computed from exactly this, not the finer original."""
    utc = as_utc(value)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


# Sorted keys: the same details always store as the same text (diffable, groupable).
# One encoder for every row: json.dumps with options builds a new one per call.
_DETAILS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def details_json(details: dict[str, Any]) -> str:
    return _DETAILS.encode(details)


def audit_row(event: AuditRecorded, retention_days: int) -> Row:
    """The chained content of one audit row (AUDIT_CONTENT_COLUMNS order)."""
    return (
        event.event_id,
        event.request_id,
        event.tenant_id,
        to_millis(event.occurred_at),
        event.event_type.value,
        event.service,
        event.action,
        event.resource_type,
        event.resource_id,
        event.status.value,
        event.error or "",
        event.actor,
        event.client_ip or "",
        event.user_agent or "",
        details_json(event.details),
        event.schema_version,
        retention_days,
    )


def cost_row(event: CostRecorded, recorded_at: datetime) -> Row:
    return (
        event.event_id,
        event.request_id,
        event.tenant_id,
        # What DateTime64(3) stores, exactly: the writer's watermark compares with it.
        to_millis(event.occurred_at),
        event.model,
        event.usage.input_tokens,
        event.usage.output_tokens,
        event.usage.cache_read_input_tokens,
        event.usage.cache_creation_input_tokens,
        event.cost_nanousd,
        event.price_version,
        event.schema_version,
        recorded_at,
    )
