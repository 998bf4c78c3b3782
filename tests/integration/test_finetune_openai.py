"""The OpenAI-compatible backend: the real `openai` SDK against a local stub of the
fine-tuning API (files, jobs create/retrieve/cancel/events), inside the real service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import openai
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.finetune import samples
from services.finetune.app import make_service as finetune_app
from services.finetune.openai_backend import OpenAIBackend
from services.leakage.app import make_service as leakage_app
from services.leakage.settings import LeakageSettings
from services.llm.app import make_service as llm_app
from services.llm.settings import LlmSettings
from services.metering.app import make_service as metering_app
from services.metering.pricing import DEFAULT_TABLE
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from shared import subjects
from shared.bus import call
from shared.messages.base import ErrorCode
from shared.messages.finetune import (
    CancelFineTune,
    CreateFineTune,
    FineTuneCreated,
    FineTuneFound,
    JobState,
)
from shared.messages.metering import MeteringTotals, QueryMeteringTotals
from shared.messages.tenants import Tier
from shared.service import Service
from tests.integration.test_finetune import ft_settings, invoke, tenant, until
from tests.support.bus import ready
from tests.support.finetune_api import FineTuningApiStub

pytestmark = pytest.mark.integration
BASE = "gpt-4o-mini-2024-07-18"
KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def stub() -> Iterator[FineTuningApiStub]:
    with FineTuningApiStub(steps=3) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def services(
    nats_url: str,
    client_broker: NatsBroker,
    stub: FineTuningApiStub,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[list[Service]]:
    data_dir = Path(tmp_path_factory.mktemp("finetune-openai"))
    common = {"nats_url": nats_url, "data_dir": data_dir}
    client = openai.AsyncOpenAI(api_key=KEY, base_url=stub.url + "/v1", max_retries=0)
    running = [
        promptconfig_app(PromptConfigSettings(**common)),
        leakage_app(LeakageSettings(**common)),
        metering_app(MeteringSettings(**common)),
        finetune_app(
            # Holds renewed every 0.3 s: a long job's rolling settlement is exercised.
            ft_settings(nats_url, data_dir).model_copy(update={"finetune_hold_renew_s": 0.3}),
            backends={"openai": OpenAIBackend(client, poll_s=0.05)},
        ),
        llm_app(
            LlmSettings(
                **common,
                anthropic_api_key=None,
                openai_api_key=KEY,
                openai_base_url=stub.url + "/v1",
            )
        ),
    ]
    for service in running:
        await service.start()
    await ready(client_broker, "finetune", "create")
    yield running
    for service in reversed(running):
        await service.stop()
    await client.close()


async def submit(broker: NatsBroker, tid: str, count: int = 20) -> FineTuneCreated:
    created = await call(
        broker,
        subjects.service("finetune", "create", tid),
        CreateFineTune(
            tenant_id=tid,
            base_model=BASE,
            training_jsonl=samples.to_jsonl(samples.examples(count)),
            epochs=2,
            backend="openai",
        ),
        FineTuneCreated,
        30,
    )
    assert created.ok and created.job, created.error
    return created


async def test_a_job_runs_on_the_provider_and_is_charged_its_trained_tokens(
    services: list[Service],
    client_broker: NatsBroker,
    stub: FineTuningApiStub,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("ftoai")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    created = await submit(client_broker, tid)
    assert created.job
    job = await until(client_broker, tid, created.job.job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.model_id.startswith(f"ft:{BASE}:stub-org:")
    remote = stub.job(job.provider_job_id)
    assert remote["status"] == "succeeded" and remote["hyperparameters"]["n_epochs"] == 2
    assert job.cost_nanousd > 0 and job.metrics["trained_tokens"] == remote["trained_tokens"]
    # What went up: the tenant's examples as chat JSONL, and the key only as a header.
    uploaded = stub.state.files[remote["training_file"]].decode().splitlines()
    assert len(uploaded) == 20
    first = json.loads(uploaded[0])["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert first[1]["content"].startswith("Category:")
    paths = [(method, path.split("?")[0]) for method, path, _ in stub.requests]
    assert ("POST", "/v1/files") in paths and ("POST", "/v1/fine_tuning/jobs") in paths
    assert ("GET", f"/v1/fine_tuning/jobs/{job.provider_job_id}/events") in paths
    assert all(h["authorization"] == f"Bearer {KEY}" for _, _, h in stub.requests)

    # llm serves it to its owner, through the provider; to nobody else.
    answered = await invoke(client_broker, tid, job.model_id, "Customer message: where is it?")
    assert answered.ok, answered.error
    assert answered.model == job.model_id and answered.provider == "openai-compatible"
    assert "where is it?" in answered.text and answered.usage.output_tokens > 0
    asked = len(stub.state.chats)
    other = new_tenant_id("ftoaix")
    await tenant(client_broker, other, Tier.ENTERPRISE)
    theirs = await invoke(client_broker, other, job.model_id, "hi")
    bogus = f"ft:{BASE}:stub-org:nope:12345678"
    nobody = await invoke(client_broker, other, bogus, "hi")
    assert theirs.error and nobody.error
    assert theirs.error.code is nobody.error.code is ErrorCode.UNKNOWN_MODEL
    assert theirs.error.message.replace(job.model_id, "M") == nobody.error.message.replace(
        bogus, "M"
    )
    assert len(stub.state.chats) == asked  # the provider was never even asked


async def test_cancel_reaches_the_provider_and_failures_are_client_safe(
    services: list[Service],
    client_broker: NatsBroker,
    stub: FineTuningApiStub,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("ftoaic")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    stub.state.steps = 10_000  # a job that would run for a long time
    try:
        created = await submit(client_broker, tid)
        assert created.job
        running = await until(client_broker, tid, created.job.job_id, {JobState.RUNNING})
        while not running.provider_job_id:  # the heartbeat records the provider's id
            running = await until(client_broker, tid, created.job.job_id, {JobState.RUNNING})
        cancelled = await call(
            client_broker,
            subjects.service("finetune", "cancel", tid),
            CancelFineTune(tenant_id=tid, job_id=created.job.job_id),
            FineTuneFound,
            10,
        )
        assert cancelled.ok and cancelled.job and cancelled.job.state is JobState.CANCELLED
        for _ in range(100):
            if stub.job(running.provider_job_id)["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
        assert stub.job(running.provider_job_id)["status"] == "cancelled"
    finally:
        stub.state.steps = 3

    stub.state.fail_jobs = True
    try:
        failed = await submit(client_broker, tid)
        assert failed.job
        job = await until(client_broker, tid, failed.job.job_id, {JobState.FAILED})
    finally:
        stub.state.fail_jobs = False
    assert "invalid_training_file" in job.error and KEY not in job.error


async def test_a_long_job_settles_as_it_goes_and_the_total_is_exact(
    services: list[Service],
    client_broker: NatsBroker,
    stub: FineTuningApiStub,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("ftoail")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    stub.state.steps = 40  # about two seconds of polling: several hold renewals
    try:
        created = await submit(client_broker, tid)
        assert created.job
        job = await until(client_broker, tid, created.job.job_id, {JobState.SUCCEEDED})
    finally:
        stub.state.steps = 3
    totals = await call(
        client_broker,
        subjects.service("metering", "totals", tid),
        QueryMeteringTotals(tenant_id=tid),
        MeteringTotals,
        5,
    )
    price = DEFAULT_TABLE.price(f"training:{BASE}").input
    remote = stub.job(job.provider_job_id)
    # Several settlements (one cost event each), no hold left, and the sum is exact.
    assert totals.requests_charged >= 2 and totals.in_flight == 0, totals
    assert totals.spent_nanousd == job.cost_nanousd == remote["trained_tokens"] * price
