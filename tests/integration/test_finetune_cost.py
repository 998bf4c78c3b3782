"""Training is metered like any model call: reserved before the job, settled after, and
the cost row audit writes to ClickHouse equals metering's total and the job's cost.

chDB hosts one engine per process: this module opens one audit service and closes it
at module end, as the other ClickHouse modules do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.audit.app import make_service as audit_app
from services.audit.settings import AuditSettings
from services.finetune import samples
from services.finetune.app import make_service as finetune_app
from services.leakage.app import make_service as leakage_app
from services.leakage.settings import LeakageSettings
from services.metering.app import make_service as metering_app
from services.metering.pricing import DEFAULT_TABLE
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from shared import subjects
from shared.bus import call
from shared.messages.finetune import JobState
from shared.messages.metering import MeteringTotals, QueryMeteringTotals
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.service import Service
from tests.integration.test_finetune import create, ft_settings, tenant, until
from tests.support.bus import ready

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def services(
    nats_url: str, client_broker: NatsBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[Service]]:
    data_dir = Path(tmp_path_factory.mktemp("finetune-cost"))
    common = {"nats_url": nats_url, "data_dir": data_dir}
    running = [
        audit_app(AuditSettings(**common, batch_timeout_s=0.2)),
        promptconfig_app(PromptConfigSettings(**common)),
        leakage_app(LeakageSettings(**common)),
        metering_app(MeteringSettings(**common)),
        finetune_app(ft_settings(nats_url, data_dir)),
    ]
    for service in running:
        await service.start()
    await ready(client_broker, "audit", "usage")
    await ready(client_broker, "finetune", "create")
    yield running
    for service in reversed(running):
        await service.stop()


async def test_training_cost_is_reserved_settled_and_equal_in_clickhouse(
    services: list[Service],
    nats_url: str,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("ftcost")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    created = await create(client_broker, tid, samples.to_jsonl(samples.examples(100)), epochs=4)
    assert created.ok and created.job, created.error
    # Reserved up front: the worst case (every example, every epoch) at the training price.
    assert created.job.reservation_id
    price = DEFAULT_TABLE.price("training:offline-extractive")
    job = await until(client_broker, tid, created.job.job_id, {JobState.SUCCEEDED})
    # Settled at what was trained: the held-out tenth is never trained on, so less than held.
    trained_cost = job.cost_nanousd
    assert 0 < trained_cost < job.training_tokens * job.epochs * price.input
    assert trained_cost % price.input == 0

    metering = await call(
        client_broker,
        subjects.service("metering", "totals", tid),
        QueryMeteringTotals(tenant_id=tid),
        MeteringTotals,
        5,
    )
    assert metering.ok and metering.in_flight == 0 and metering.reserved_nanousd == 0
    assert metering.spent_nanousd == trained_cost and metering.requests_charged == 1

    async with OpsClient(nats_url) as ops:
        for _ in range(100):
            report = await ops.usage(tid, metering.month)
            assert report.ok, report.error
            if report.cost_nanousd:
                break
            await asyncio.sleep(0.1)
    assert report.cost_nanousd == metering.spent_nanousd == trained_cost
    assert [(m.model, m.cost_nanousd) for m in report.by_model] == [
        ("training:offline-extractive", trained_cost)
    ]
