"""leakage's subscriber: a thin wrapper over Scanner.scan, auditing every finding."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsRouter

from services.leakage.scanner import Scanner, summary
from shared.audit import AuditTrail
from shared.messages.audit import AuditEventType
from shared.messages.leakage import ScanText, TextScanned
from shared.service import reply_ok, rpc

SERVICE = "leakage"


@dataclass
class Deps:
    scanner: Scanner
    trail: AuditTrail


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    @rpc(router, SERVICE, "scan", ScanText, TextScanned, deps.trail)
    async def scan(msg: ScanText) -> TextScanned:
        result = deps.scanner.scan(msg)
        if result.findings:
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.LEAKAGE_DETECTED,
                action="leakage.scan",
                resource_type="scan",
                resource_id=msg.location.value,
                details=summary(msg, result),
            )
        return reply_ok(
            TextScanned, msg, verdict=result.verdict, text=result.text, findings=result.findings
        )

    return router
