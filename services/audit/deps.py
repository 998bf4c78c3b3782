"""What audit's handlers need, built once in app.bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsBroker

from services.audit.adapters import AuditStore
from services.audit.anchors import HeadAnchors
from services.audit.lease import WriterLease
from services.audit.settings import AuditSettings
from services.audit.writer import AuditWriter
from shared.audit import AuditTrail

SERVICE = "audit"


@dataclass
class Deps:
    store: AuditStore
    writer: AuditWriter
    lease: WriterLease | None
    anchors: HeadAnchors | None
    trail: AuditTrail
    broker: NatsBroker
    settings: AuditSettings
