"""The platform as `make run` starts it: nats-server plus seven service processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.demo import run_demo
from shared.demo_data import ACME, GLOBEX
from shared.launcher import Platform

pytestmark = pytest.mark.e2e


async def test_one_request_per_tenant_is_answered(platform: Platform) -> None:
    results = await run_demo(platform.nats_url, *platform.ops_credentials)
    by_tenant = {r.tenant.tenant_id: r for r in results}
    acme, globex = by_tenant[ACME.tenant_id], by_tenant[GLOBEX.tenant_id]

    assert "45 days" in acme.completion.text
    assert "75" in globex.completion.text
    # Grounded in its own documents only.
    assert {c.document_id for c in acme.completion.citations} <= {
        d.document_id for d in ACME.documents
    }
    assert {c.document_id for c in globex.completion.citations} <= {
        d.document_id for d in GLOBEX.documents
    }
    assert "travel" not in acme.completion.text.lower()
    for r in results:
        assert r.completion.model == "offline-extractive"
        assert r.completion.usage.input_tokens > 0 and r.completion.usage.output_tokens > 0
        assert r.usage.requests >= 1 and r.usage.cost_nanousd > 0
        assert r.usage.audit_events >= 1
    assert all(platform.running().values()), platform.running()


def test_logs_are_written_per_service(platform: Platform) -> None:
    for name in platform.services:
        assert (Path(platform.log_dir) / f"{name}.log").exists()
