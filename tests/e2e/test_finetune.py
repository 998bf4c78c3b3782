"""Fine-tuning on the platform as `make run` starts it: every service its own process,
each with only its own NATS permissions. A tenant's job trains, and the tenant then asks
the gateway for an answer from its own fine-tuned model."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from services.finetune import samples
from shared import subjects
from shared.bus import call
from shared.client import TenantClient
from shared.launcher import Platform
from shared.messages.finetune import (
    CreateFineTune,
    FineTuneCreated,
    FineTuneFound,
    JobState,
    ShowFineTune,
)
from shared.messages.lifecycle import OnboardTenant
from shared.messages.tenants import Tier
from shared.ops import OpsClient

pytestmark = pytest.mark.e2e


async def test_a_tenant_trains_a_model_and_asks_it_through_the_gateway(
    platform: Platform,
) -> None:
    tid = f"ft-{uuid.uuid4().hex[:8]}"
    user, password = platform.ops_credentials
    async with OpsClient(platform.nats_url, user=user, password=password) as ops:
        onboarded = await ops.onboard(
            OnboardTenant(tenant_id=tid, name="Fjordline Support", tier=Tier.ENTERPRISE)
        )
        assert onboarded.ok, onboarded.error
        created = await call(
            ops.nc,
            subjects.service("finetune", "create", tid),
            CreateFineTune(
                tenant_id=tid,
                base_model="offline-extractive",
                training_jsonl=samples.to_jsonl(samples.examples(200)),
            ),
            FineTuneCreated,
            30,
        )
        assert created.ok and created.job, created.error
        deadline = time.monotonic() + 60
        while True:
            shown = await call(
                ops.nc,
                subjects.service("finetune", "show", tid),
                ShowFineTune(tenant_id=tid, job_id=created.job.job_id),
                FineTuneFound,
                10,
            )
            assert shown.ok and shown.job, shown.error
            if shown.job.state.terminal:
                break
            assert time.monotonic() < deadline, shown.job.state
            await asyncio.sleep(0.2)
        assert shown.job.state is JobState.SUCCEEDED, shown.job.error
        model_id = shown.job.model_id

    client = TenantClient(tid, platform.nats_url, user=onboarded.user, password=onboarded.password)
    await client.connect()
    try:
        prompt = samples.examples(1, seed=4242)[0].prompt
        answered = await client.ask(prompt, model=model_id, top_k=0)
    finally:
        await client.close()
    assert answered.ok, answered.error
    assert answered.model == model_id
    assert answered.text.startswith("Category:")
    # Served and charged like any other call (priced as its base model).
    assert answered.usage.output_tokens > 0 and answered.cost_nanousd > 0
    # Every process stayed within its NATS permissions.
    log = (platform.log_dir / "nats-server.log").read_text(errors="replace")
    assert "Permissions Violation" not in log
