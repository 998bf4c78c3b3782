"""Prometheus metrics of one service process, with label cardinality bounded by design.

FastStream's Prometheus middleware gives the per-handler series (messages received,
processed by status, exceptions, in flight, latency histograms, published messages).
Its handler label is the raw subject, and every Tenantry subject carries a tenant id
(and completions a request id): unbounded. Here subjects are reduced to their pattern
(`svc.retrieval.search.*`), so a handler label is a stage of the request path and its
latency histogram is that stage's latency.

Per-tenant counts come from one counter whose tenant label is capped: the first
`max_tenants` ids seen get their own series, later ones count under `_other`. Spend,
errors and findings per tenant live in ClickHouse (the dashboards read them there);
Prometheus holds what must be seen within seconds.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from faststream._internal.middlewares import BaseMiddleware
from faststream.nats.prometheus.provider import (
    BatchNatsMetricsSettingsProvider,
    NatsMetricsSettingsProvider,
)
from faststream.prometheus import ConsumeAttrs
from faststream.prometheus.middleware import PrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from shared.tenancy import is_valid_tenant_id

if TYPE_CHECKING:
    from faststream.message import StreamMessage
    from faststream.response import PublishCommand

    from shared.service import Service

OTHER = "_other"
DEFAULT_MAX_TENANTS = 500
# First token -> index of the tenant token (svc.<service>.<verb>.<tid>).
_TENANT_POSITION = {"tenant": 1, "intake": 1, "evt": 1, "svc": 3}


def subject_pattern(subject: str) -> str:
    """The subject with tenant, request and inbox tokens replaced by `*`."""
    parts = subject.split(".")
    head = parts[0]
    if head in ("_INBOX", "_TINBOX", "deadletter"):
        return f"{head}.>"
    if head == "$KV" and len(parts) > 2:
        return f"$KV.{parts[1]}.>"  # bucket keys are tenant ids
    if head == "$JS":
        return ".".join(parts[:3]) + ".>"
    position = _TENANT_POSITION.get(head)
    if position is None:
        return ".".join(parts[:2]) + (".>" if len(parts) > 2 else "")
    if len(parts) > position:
        parts[position] = "*"
    if head == "tenant" and len(parts) > 3 and parts[2] == "completion":
        return "tenant.*.completion.*"
    return ".".join(parts)


def subject_tenant(subject: str) -> str | None:
    parts = subject.split(".")
    position = _TENANT_POSITION.get(parts[0])
    if position is None or len(parts) <= position:
        return None
    candidate = parts[position]
    return candidate if is_valid_tenant_id(candidate) else None


class TenantLabels:
    """Maps tenant ids to label values, at most `limit` distinct ones (then `_other`)."""

    def __init__(self, limit: int = DEFAULT_MAX_TENANTS) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, tenant_id: str) -> str:
        if tenant_id in self._seen:
            return tenant_id
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(tenant_id)
                return tenant_id
        return OTHER


class _Provider(NatsMetricsSettingsProvider):
    def get_consume_attrs_from_message(self, msg: StreamMessage[Any]) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        attrs["destination_name"] = subject_pattern(attrs["destination_name"])
        return attrs

    def get_publish_destination_name_from_cmd(self, cmd: PublishCommand) -> str:
        return subject_pattern(super().get_publish_destination_name_from_cmd(cmd))


class _BatchProvider(BatchNatsMetricsSettingsProvider):
    def get_consume_attrs_from_message(self, msg: StreamMessage[Any]) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        attrs["destination_name"] = subject_pattern(attrs["destination_name"])
        return attrs

    def get_publish_destination_name_from_cmd(self, cmd: PublishCommand) -> str:
        return subject_pattern(super().get_publish_destination_name_from_cmd(cmd))


def _provider(msg: object) -> _Provider | _BatchProvider | None:
    if isinstance(msg, list | tuple):
        return _BatchProvider()
    # KV and object-store watches hand over other types: not counted.
    from nats.aio.msg import Msg

    return _Provider() if msg is None or isinstance(msg, Msg) else None


class ServiceMetrics:
    """One registry per service (several services share a process in tests)."""

    def __init__(self, service: str, max_tenants: int = DEFAULT_MAX_TENANTS) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.tenant_labels = TenantLabels(max_tenants)
        self.tenant_messages = Counter(
            "tenantry_tenant_messages",
            "Messages handled per tenant, subject pattern and outcome (tenant label capped).",
            ["service", "tenant", "subject", "outcome"],
            registry=self.registry,
        )
        self.middleware: PrometheusMiddleware[Any, Any] = PrometheusMiddleware(
            settings_provider_factory=_provider,
            registry=self.registry,
            app_name=service,
            metrics_prefix="tenantry",
        )

    def tenant_middleware(self) -> type[BaseMiddleware[Any, Any]]:
        metrics = self

        class TenantCounts(BaseMiddleware[Any, Any]):
            async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
                subject = getattr(msg.raw_message, "subject", "")
                tenant = subject_tenant(subject) if isinstance(subject, str) else None
                if tenant is None:
                    return await call_next(msg)
                labels = (metrics.service, metrics.tenant_labels(tenant), subject_pattern(subject))
                try:
                    result = await call_next(msg)
                except Exception:
                    metrics.tenant_messages.labels(*labels, "error").inc()
                    raise
                metrics.tenant_messages.labels(*labels, "ok").inc()
                return result

        return TenantCounts

    def instrument(self, service: Service) -> None:
        # Outermost, so the latency histogram covers the other middlewares too.
        service.broker.insert_middleware(self.tenant_middleware())
        service.broker.insert_middleware(self.middleware)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
