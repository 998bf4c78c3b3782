"""OpenTelemetry tracing across NATS hops: one trace id from the client's request through
every service it reaches.

On when an OTLP endpoint is configured (the standard OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), off otherwise: the embedded mode exports nowhere.

Two halves:
- consuming: FastStream's telemetry middleware starts a CONSUMER span per handled
  message, continuing the trace found in the message's `traceparent` header, and keeps
  it current while the handler runs. Span names use subject patterns, not raw subjects
  (which hold tenant and request ids).
- sending: services call each other with nats-py directly (shared.bus.call uses
  `nc.request`), which FastStream does not see, so `instrument_nats_client` makes
  nats-py's request/publish add the current context to the headers they send. Only
  when the caller set no `traceparent` of its own; and never without an active span.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from faststream.nats.opentelemetry.provider import (
    NatsTelemetrySettingsProvider,
    telemetry_attributes_provider_factory,
)
from faststream.opentelemetry.middleware import TelemetryMiddleware
from nats.aio.client import Client as NatsClient
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from shared.metrics import subject_pattern

if TYPE_CHECKING:
    from faststream.message import StreamMessage
    from faststream.response import PublishCommand

    from shared.service import Service

_PATCHED = "_tenantry_trace_headers"
# JetStream and KV API requests ($JS.API..., $KV...) and replies are protocol, not
# messages: with a traceparent on them, onboarding lost a tenant's NATS user (tried on
# nats-server 2.15.1), and a reply continues the caller's own span anyway.
_UNTOUCHED = ("$", "_INBOX.", "_TINBOX.")


def enabled(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def provider_for(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting over OTLP/HTTP (or to `exporter`, e.g. in tests)."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"tenantry-{service}"}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_* variables
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _Names(NatsTelemetrySettingsProvider):
    def get_consume_destination_name(self, msg: StreamMessage[Any]) -> str:
        return subject_pattern(super().get_consume_destination_name(msg))

    def get_publish_destination_name(self, cmd: PublishCommand) -> str:
        return subject_pattern(super().get_publish_destination_name(cmd))


def _names_factory(msg: object) -> Any:
    base = telemetry_attributes_provider_factory(msg)  # type: ignore[call-overload]
    return _Names() if isinstance(base, NatsTelemetrySettingsProvider) else base


def _with_context(subject: str, headers: dict[str, str] | None) -> dict[str, str] | None:
    if subject.startswith(_UNTOUCHED) or (headers and "traceparent" in headers):
        return headers
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier or headers


def instrument_nats_client() -> None:
    """Make nats-py's request and publish carry the current trace context (idempotent)."""
    if getattr(NatsClient, _PATCHED, False):
        return
    request, publish = NatsClient.request, NatsClient.publish

    @functools.wraps(request)
    async def traced_request(
        self: NatsClient,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,
        old_style: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return await request(
            self, subject, payload, timeout=timeout, old_style=old_style,
            headers=_with_context(subject, headers),
        )  # fmt: skip

    @functools.wraps(publish)
    async def traced_publish(
        self: NatsClient,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        await publish(self, subject, payload, reply=reply, headers=_with_context(subject, headers))

    NatsClient.request = traced_request  # type: ignore[method-assign]
    NatsClient.publish = traced_publish  # type: ignore[method-assign]
    setattr(NatsClient, _PATCHED, True)


def instrument(service: Service, provider: TracerProvider) -> None:
    """Before the broker starts: consume spans for every subscriber, context on sends."""
    service.broker.insert_middleware(
        TelemetryMiddleware(
            settings_provider_factory=_names_factory,
            tracer_provider=provider,
        )
    )
    instrument_nats_client()


def shutdown(provider: TracerProvider) -> None:
    provider.shutdown()  # flushes the batch: the last spans are not lost at stop


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None
