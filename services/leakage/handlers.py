"""leakage's handler: a thin wrapper over Scanner.scan, auditing every finding.

Each finding is its own audit event (detector, kind, where, offsets, action), so a
tenant's export lists them one per row; one more event per scan holds the totals. A
text holding thousands of e-mail addresses would flood the trail, so the itemised
events stop at MAX_ITEMISED per scan and the totals say how many were left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from services.leakage.scanner import Scanner, finding_details, summary
from shared.audit import AuditTrail
from shared.feeds import Feed
from shared.intake import reply_ok
from shared.messages.audit import AuditEventType
from shared.messages.leakage import ScanText, TextScanned
from shared.service import Handlers, Rpc

SERVICE = "leakage"
MAX_ITEMISED = 50


@dataclass(frozen=True)
class Deps:
    scanner: Scanner
    trail: AuditTrail
    # The tenant registry and fingerprint feeds keeping the scanner's knowledge current.
    feeds: Sequence[Feed] = ()

    async def close(self) -> None:
        for feed in reversed(self.feeds):
            await feed.stop()


async def scan(msg: ScanText, deps: Deps) -> TextScanned:
    result = deps.scanner.scan(msg)
    if result.findings:
        details = summary(msg, result)
        details["not_itemised"] = max(0, len(result.findings) - MAX_ITEMISED)
        await asyncio.gather(
            deps.trail.record_for(
                msg,
                event_type=AuditEventType.LEAKAGE_DETECTED,
                action="leakage.scan",
                resource_type="scan",
                resource_id=msg.location.value,
                details=details,
            ),
            *(
                deps.trail.record_for(
                    msg,
                    event_type=AuditEventType.LEAKAGE_DETECTED,
                    action="leakage.finding",
                    resource_type=finding.detector,
                    resource_id=finding.kind,
                    details=finding_details(finding),
                )
                for finding in result.findings[:MAX_ITEMISED]
            ),
        )
    return reply_ok(
        TextScanned, msg, verdict=result.verdict, text=result.text, findings=result.findings
    )


HANDLERS = Handlers[Deps](SERVICE, rpcs=[Rpc("scan", ScanText, TextScanned, scan)])
