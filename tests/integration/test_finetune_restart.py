"""Kill the finetune service (SIGKILL, a real process) mid-job and start it again: the
new process finds the job its dead predecessor left "running", resumes it (polling the
provider's job it already started, not training twice) and finishes it.

The job runs at the OpenAI-compatible stub, held in "running" for as long as the test
wants, so the kill is certain to land mid-job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats.errors
import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.finetune import samples
from services.leakage.app import make_service as leakage_app
from services.leakage.settings import LeakageSettings
from services.metering.app import make_service as metering_app
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from shared import subjects
from shared.bus import call
from shared.finetune_store import JobStore
from shared.messages.finetune import CreateFineTune, FineTuneCreated, JobState
from shared.messages.tenants import Tier
from shared.service import Service
from tests.integration.test_finetune import tenant, until
from tests.support.finetune_api import FineTuningApiStub

pytestmark = pytest.mark.integration
BASE = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def stub() -> Iterator[FineTuningApiStub]:
    with FineTuningApiStub(steps=100_000) as server:  # runs until the test says otherwise
        yield server


@pytest_asyncio.fixture(scope="module")
async def services(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[Service]]:
    common = {"nats_url": nats_url, "data_dir": Path(tmp_path_factory.mktemp("ft-restart"))}
    running = [
        promptconfig_app(PromptConfigSettings(**common)),
        leakage_app(LeakageSettings(**common)),
        metering_app(MeteringSettings(**common)),
    ]
    for service in running:
        await service.start()
    yield running
    for service in reversed(running):
        await service.stop()


def start_finetune(nats_url: str, stub: FineTuningApiStub, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TENANTRY_NATS_URL": nats_url,
        "TENANTRY_LOG_FORMAT": "json",
        "TENANTRY_FINETUNE_BACKEND": "openai",
        "TENANTRY_FINETUNE_HEARTBEAT_S": "0.2",
        "TENANTRY_FINETUNE_STALE_AFTER_S": "1.5",
        "TENANTRY_FINETUNE_POLL_S": "0.05",
        "OPENAI_API_KEY": "sk-test-restart-0123456789",
        "OPENAI_BASE_URL": stub.url + "/v1",
    }
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.finetune"], env=env, stdout=out, stderr=out
    )


async def serving(client: NatsBroker, timeout_s: float = 60) -> None:
    """Until a finetune process answers (a fresh interpreter can take a while to start on
    a busy machine: longer than tests.support.bus.ready allows)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await client.connection.request(subjects.health("finetune"), b"", timeout=1)
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            assert time.monotonic() < deadline, "finetune never started"
            await asyncio.sleep(0.1)


async def test_a_killed_service_resumes_its_job_after_restart(
    services: list[Service],
    nats_url: str,
    client_broker: NatsBroker,
    stub: FineTuningApiStub,
    tmp_path: Path,
    new_tenant_id: Callable[[str], str],
) -> None:
    log = tmp_path / "finetune.log"
    first = start_finetune(nats_url, stub, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        await serving(client_broker)
        tid = new_tenant_id("ftkill")
        await tenant(client_broker, tid, Tier.ENTERPRISE)
        created = await call(
            client_broker,
            subjects.service("finetune", "create", tid),
            CreateFineTune(
                tenant_id=tid,
                base_model=BASE,
                training_jsonl=samples.to_jsonl(samples.examples(20)),
                backend="openai",
            ),
            FineTuneCreated,
            30,
        )
        assert created.ok and created.job, created.error
        job_id = created.job.job_id
        running = await until(client_broker, tid, job_id, {JobState.RUNNING})
        while not running.provider_job_id:  # recorded by the worker's heartbeat
            running = await until(client_broker, tid, job_id, {JobState.RUNNING})
        assert running.attempts == 1

        first.send_signal(signal.SIGKILL)  # no goodbye: the job stays marked as its own
        assert first.wait(timeout=10) == -signal.SIGKILL
        # What the dead process left, read straight from KV (no finetune answers now).
        store = await JobStore.open(client_broker.connection.jetstream())
        left = await store.job(tid, job_id)
        assert left and left[0].state is JobState.RUNNING and left[0].worker == running.worker

        stub.state.steps = 3  # the provider's job can finish now
        second = start_finetune(nats_url, stub, log)
        await serving(client_broker)
        done = await until(
            client_broker, tid, job_id, {JobState.SUCCEEDED, JobState.FAILED}, timeout=60
        )
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.attempts == 2 and done.worker == ""
        # Resumed, not redone: one upload and one provider job, the one first started.
        assert done.provider_job_id == running.provider_job_id
        assert len(stub.state.jobs) == 1 and len(stub.state.files) == 1
        assert done.model_id.startswith(f"ft:{BASE}:") and done.cost_nanousd > 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                # A graceful stop is not what this test is about: on a loaded machine the
                # drain can outlast the wait, and then the process is killed.
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
