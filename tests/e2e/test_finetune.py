"""Fine-tuning on the platform as `make run` starts it: every service its own process,
each with only its own NATS permissions. A tenant's job trains, and the tenant then asks
the gateway for an answer from its own fine-tuned model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from services.finetune import samples
from services.promptconfig.registry import profile_of
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
        # The tenant's config allows it; ops make it the default (a new config version).
        config = (await ops.get_tenant(tid)).config
        assert config is not None and model_id in config.allowed_models
        profile = profile_of(config).model_copy(update={"default_model": model_id})
        saved = await ops.save_tenant(tid, profile)
        assert saved.ok and saved.config and saved.config.version == config.version + 1

    client = TenantClient(tid, platform.nats_url, user=onboarded.user, password=onboarded.password)
    await client.connect()
    try:
        prompt = samples.examples(1, seed=4242)[0].prompt
        answered = await client.ask(prompt, top_k=0)  # no model named: the default
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


def _tenantry(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        env={
            **os.environ,
            "TENANTRY_NATS_URL": platform.nats_url,
            "TENANTRY_DATA_DIR": str(platform.data_dir),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_creates_waits_lists_shows_and_deletes(platform: Platform, tmp_path: Path) -> None:
    tid = f"ftcli-{uuid.uuid4().hex[:8]}"
    made = _tenantry(
        platform,
        "tenants",
        "create",
        "--tenant",
        tid,
        "--name",
        "Clifton Ltd",
        "--tier",
        "enterprise",
    )
    assert made.returncode == 0, made.stderr
    data = tmp_path / "train.jsonl"
    data.write_text(samples.to_jsonl(samples.examples(60)))
    created = _tenantry(
        platform,
        "finetune",
        "create",
        "--tenant",
        tid,
        "--base-model",
        "offline-extractive",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--wait",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    assert job["state"] == "succeeded" and job["model_id"].startswith("ft:offline-extractive:")
    listed = _tenantry(platform, "finetune", "list", "--tenant", tid, "--json")
    assert [j["job_id"] for j in json.loads(listed.stdout)] == [job["job_id"]]
    shown = _tenantry(platform, "finetune", "show", "--tenant", tid, job["job_id"])
    assert shown.returncode == 0 and "succeeded" in shown.stdout and job["model_id"] in shown.stdout
    late = _tenantry(platform, "finetune", "cancel", "--tenant", tid, job["job_id"])
    assert late.returncode != 0 and "already succeeded" in late.stderr
    deleted = _tenantry(platform, "finetune", "delete", "--tenant", tid, job["job_id"])
    assert deleted.returncode == 0 and "4 stored items removed" in deleted.stdout, deleted.stderr
    pro = f"ftclip-{uuid.uuid4().hex[:8]}"
    assert (
        _tenantry(
            platform, "tenants", "create", "--tenant", pro, "--name", "Pro Co", "--tier", "pro"
        ).returncode
        == 0
    )
    refused = _tenantry(
        platform,
        "finetune",
        "create",
        "--tenant",
        pro,
        "--base-model",
        "offline-extractive",
        "--data",
        str(data),
    )
    assert refused.returncode != 0 and "enterprise" in refused.stderr
