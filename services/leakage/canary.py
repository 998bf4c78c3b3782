"""The canary detector: another tenant's canary token in the scanned text.

The tokens themselves (derivation, planting, stripping) are shared.canary, since
retrieval plants them and leakage looks for them.
"""

from __future__ import annotations

from services.leakage.detectors import Detection
from shared.canary import PATTERN, PREFIX, Canaries
from shared.messages.leakage import ScanText


class CanaryDetector:
    """Any canary but the scanning tenant's own. One that no current tenant owns (a
    deleted tenant's, or a forgery) is reported the same way: it is not this tenant's."""

    name = "canary"

    def __init__(self, canaries: Canaries) -> None:
        self._canaries = canaries

    def detect(self, request: ScanText) -> list[Detection]:
        if PREFIX not in request.text:
            return []
        own = self._canaries.token(request.tenant_id)
        return [
            Detection(self.name, "foreign_canary", request.location, m.start(), m.end())
            for m in PATTERN.finditer(request.text)
            if m.group() != own
        ]
