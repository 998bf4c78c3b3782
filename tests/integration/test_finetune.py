"""Fine-tuning over a real nats-server: promptconfig, leakage, metering, llm and finetune
running as services, the offline backend really training.

A "gated" backend (the offline trainer that first waits for the test to open a gate)
keeps a job running for as long as a test needs it to: to cancel it, or to crash the
worker that holds it and watch another take over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker

from services.finetune import samples
from services.finetune.app import make_service as finetune_app
from services.finetune.backends import OfflineBackend, Progress, Trained
from services.finetune.handlers import Deps as FineTuneDeps
from services.finetune.runner import Runner
from services.finetune.settings import FineTuneSettings
from services.leakage.app import make_service as leakage_app
from services.leakage.settings import LeakageSettings
from services.llm.app import make_service as llm_app
from services.llm.settings import LlmSettings
from services.metering.app import make_service as metering_app
from services.metering.settings import MeteringSettings
from services.promptconfig.app import make_service as promptconfig_app
from services.promptconfig.settings import PromptConfigSettings
from services.promptconfig.tiers import default_profile
from shared import subjects
from shared.bus import FINETUNE_BUCKET, call, kv_keys
from shared.canary import Canaries
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.base import ErrorCode
from shared.messages.finetune import (
    CancelFineTune,
    CreateFineTune,
    DeleteFineTune,
    FineTuneChanged,
    FineTuneCreated,
    FineTuneFound,
    FineTuneJob,
    FineTunesListed,
    JobState,
    ListFineTunes,
    ShowFineTune,
)
from shared.messages.llm import ChatMessage, InvokeModel, ModelInvoked
from shared.messages.metering import MeteringTotals, QueryMeteringTotals
from shared.messages.tenants import (
    ResolveTenant,
    TenantResolved,
    TenantUpserted,
    Tier,
    UpsertTenant,
)
from shared.service import Service
from shared.tuned_model import Cancelled, Example
from tests.support.bus import ready

pytestmark = pytest.mark.integration
BASE = "offline-extractive"


class GatedBackend:
    """The offline trainer, held at the start until `gate` opens (or the job is cancelled)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    def supports(self, base_model: str) -> bool:
        return base_model == BASE

    async def train(self, job: FineTuneJob, examples: list[Example], progress: Progress) -> Trained:
        self.started.set()
        while not self.gate.is_set():
            if progress.cancel.is_set():
                raise Cancelled
            await asyncio.sleep(0.02)
        return await OfflineBackend().train(job, examples, progress)


def ft_settings(nats_url: str, data_dir: Path) -> FineTuneSettings:
    return FineTuneSettings(
        nats_url=nats_url,
        data_dir=data_dir,
        finetune_heartbeat_s=0.2,
        finetune_stale_after_s=1.0,
        finetune_parallel=2,
    )


@pytest_asyncio.fixture(scope="module")
async def platform(
    nats_url: str, client_broker: NatsBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, object]]:
    data_dir = Path(tmp_path_factory.mktemp("finetune"))
    common = {"nats_url": nats_url, "data_dir": data_dir}
    gated = GatedBackend()
    running: dict[str, Service] = {
        "promptconfig": promptconfig_app(PromptConfigSettings(**common)),
        "leakage": leakage_app(LeakageSettings(**common)),
        "metering": metering_app(MeteringSettings(**common)),
        "llm": llm_app(LlmSettings(**common, anthropic_api_key=None)),
        "finetune": finetune_app(
            ft_settings(nats_url, data_dir),
            backends={"offline": OfflineBackend(), "gated": gated},
        ),
    }
    for service in running.values():
        await service.start()
    await ready(client_broker, "finetune", "create")
    yield {"services": running, "gated": gated, "data_dir": data_dir}
    for service in reversed(running.values()):
        await service.stop()


async def tenant(broker: NatsBroker, tid: str, tier: Tier, name: str = "") -> None:
    profile = default_profile(name or f"Tenant {tid}", tier, allowed_models=[BASE])
    saved = await call(
        broker,
        subjects.service("promptconfig", "upsert", tid),
        UpsertTenant(tenant_id=tid, profile=profile),
        TenantUpserted,
        5,
    )
    assert saved.ok, saved.error


async def create(
    broker: NatsBroker, tid: str, jsonl: str, epochs: int = 3, backend: str | None = None
) -> FineTuneCreated:
    return await call(
        broker,
        subjects.service("finetune", "create", tid),
        CreateFineTune(
            tenant_id=tid, base_model=BASE, training_jsonl=jsonl, epochs=epochs, backend=backend
        ),
        FineTuneCreated,
        30,
    )


async def verb(broker: NatsBroker, name: str, msg: object) -> FineTuneFound:
    assert isinstance(msg, ShowFineTune | CancelFineTune | DeleteFineTune)
    return await call(
        broker, subjects.service("finetune", name, msg.tenant_id), msg, FineTuneFound, 10
    )


async def until(
    broker: NatsBroker, tid: str, job_id: str, states: set[JobState], timeout: float = 30
) -> FineTuneJob:
    deadline = time.monotonic() + timeout
    while True:
        shown = await verb(broker, "show", ShowFineTune(tenant_id=tid, job_id=job_id))
        assert shown.ok and shown.job, shown.error
        if shown.job.state in states:
            return shown.job
        assert time.monotonic() < deadline, f"job stuck in {shown.job.state}"
        await asyncio.sleep(0.1)


async def events(broker: NatsBroker, subject: str) -> list[bytes]:
    """Every message on `subject` in the events stream, oldest first."""
    js = broker.connection.jetstream()
    sub = await js.pull_subscribe(subject, stream=subjects.EVENTS_STREAM)
    found = []
    try:
        while True:
            try:
                batch = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                break
            for msg in batch:
                found.append(msg.data)
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return found


async def audit_rows(broker: NatsBroker, tid: str) -> list[AuditRecorded]:
    return [
        AuditRecorded.model_validate_json(d)
        for d in await events(broker, subjects.audit_event(tid))
    ]


async def invoke(broker: NatsBroker, tid: str, model: str, question: str) -> ModelInvoked:
    return await call(
        broker,
        subjects.service("llm", "invoke", tid),
        InvokeModel(
            tenant_id=tid,
            model=model,
            allowed_models=[BASE, model],
            system="",
            messages=[ChatMessage(role="user", content=question)],
            max_tokens=200,
        ),
        ModelInvoked,
        10,
    )


async def test_other_tiers_are_refused_with_forbidden_and_audited(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("ftpro")
    await tenant(client_broker, tid, Tier.PRO)
    refused = await create(client_broker, tid, samples.to_jsonl(samples.examples(20)))
    assert refused.error and refused.error.code is ErrorCode.FORBIDDEN
    assert "enterprise" in refused.error.message and refused.job is None
    await asyncio.sleep(0.3)
    denied = [r for r in await audit_rows(client_broker, tid) if r.action == "finetune.create"]
    assert [r.event_type for r in denied] == [AuditEventType.ACCESS_DENIED]
    listed = await call(
        client_broker,
        subjects.service("finetune", "list", tid),
        ListFineTunes(tenant_id=tid),
        FineTunesListed,
        5,
    )
    assert listed.ok and listed.jobs == []


async def test_whole_lifecycle_trains_a_model_only_its_owner_can_use(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    a, b = new_tenant_id("fta"), new_tenant_id("ftb")
    await tenant(client_broker, a, Tier.ENTERPRISE)
    await tenant(client_broker, b, Tier.ENTERPRISE)
    created = await create(client_broker, a, samples.to_jsonl(samples.examples(200)))
    assert created.ok and created.job, created.error
    assert created.job.state is JobState.QUEUED and created.job.examples == 200
    job = await until(client_broker, a, created.job.job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.model_id.startswith(f"ft:{BASE}:") and job.progress == 1.0
    # It learned: on held-out examples the tuned model beats the base one clearly.
    assert job.metrics["held_out_f1_tuned"] > job.metrics["held_out_f1_base"] + 0.5
    assert job.cost_nanousd > 0

    # Every transition is an event, in order, and an audit row.
    changes = [
        FineTuneChanged.model_validate_json(d)
        for d in await events(client_broker, subjects.finetune_event(a))
    ]
    states = [c.state for c in changes if c.job_id == job.job_id]
    moves = [s for i, s in enumerate(states) if i == 0 or states[i - 1] is not s]
    assert moves == [JobState.VALIDATING, JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    rows = [r for r in await audit_rows(client_broker, a) if r.resource_id == job.job_id]
    assert [r.action for r in rows] == [
        "finetune.validating",
        "finetune.queued",
        "finetune.running",
        "finetune.succeeded",
    ]

    # The owner's config now allows it; it can be made the default (a new config version).
    resolved = await call(
        client_broker,
        subjects.service("promptconfig", "resolve", a),
        ResolveTenant(tenant_id=a),
        TenantResolved,
        5,
    )
    assert resolved.config and job.model_id in resolved.config.allowed_models
    profile = resolved.config.model_dump(
        include={
            "name",
            "tier",
            "admin_email",
            "aliases",
            "domains",
            "system_prompt_template",
            "custom_instructions",
            "allowed_models",
            "limits",
            "leakage_policy",
        }
    )
    saved = await call(
        client_broker,
        subjects.service("promptconfig", "upsert", a),
        UpsertTenant.model_validate(
            {"tenant_id": a, "profile": {**profile, "default_model": job.model_id}}
        ),
        TenantUpserted,
        5,
    )
    assert saved.ok and saved.config and saved.config.default_model == job.model_id
    assert saved.config.version == resolved.config.version + 1

    # The owner's model answers in the house style it learned.
    held_out = samples.examples(5, seed=1234)
    answers = [await invoke(client_broker, a, job.model_id, e.prompt) for e in held_out]
    assert all(r.ok and r.model == job.model_id and r.usage.output_tokens > 0 for r in answers)
    assert all(r.text.startswith("Category:") for r in answers)

    # Tenant B can neither use, list, show, cancel, delete nor detect A's job or model:
    # each answer is the one a job or model that never existed gets.
    bogus_model = f"ft:{BASE}:0123456789abcdef"
    theirs, nobody = (
        await invoke(client_broker, b, job.model_id, "hi"),
        await invoke(client_broker, b, bogus_model, "hi"),
    )
    assert theirs.error and nobody.error
    assert theirs.error.code is nobody.error.code is ErrorCode.UNKNOWN_MODEL
    assert theirs.error.message.replace(job.model_id, "M") == nobody.error.message.replace(
        bogus_model, "M"
    )
    listed = await call(
        client_broker,
        subjects.service("finetune", "list", b),
        ListFineTunes(tenant_id=b),
        FineTunesListed,
        5,
    )
    assert listed.ok and listed.jobs == []
    bogus_job = "ftjob-0123456789abcdef"
    for name, kind in (
        ("show", ShowFineTune),
        ("cancel", CancelFineTune),
        ("delete", DeleteFineTune),
    ):
        real = await verb(client_broker, name, kind(tenant_id=b, job_id=job.job_id))
        fake = await verb(client_broker, name, kind(tenant_id=b, job_id=bogus_job))
        assert real.error and fake.error and real.error == fake.error and real.job is None
    await asyncio.sleep(0.3)
    denied = [r for r in await audit_rows(client_broker, b) if r.action == "model.invoke"]
    assert {r.event_type for r in denied} == {AuditEventType.ACCESS_DENIED}
    # Each job-id probe is on B's own trail, A's real job id and the made-up one alike.
    probes = [
        (r.action, r.resource_id)
        for r in await audit_rows(client_broker, b)
        if r.event_type is AuditEventType.ACCESS_DENIED and r.resource_type == "finetune_job"
    ]
    for probed in ("show", "cancel", "delete"):
        assert (f"finetune.{probed}", job.job_id) in probes
        assert (f"finetune.{probed}", bogus_job) in probes
    # A's trail holds nothing of B's probing.
    assert not [
        r
        for r in await audit_rows(client_broker, a)
        if r.event_type is AuditEventType.ACCESS_DENIED
    ]
    still = await until(client_broker, a, job.job_id, {JobState.SUCCEEDED})
    assert still.state is JobState.SUCCEEDED

    # Training was reserved and settled with metering: its total is the job's cost.
    totals = await call(
        client_broker,
        subjects.service("metering", "totals", a),
        QueryMeteringTotals(tenant_id=a),
        MeteringTotals,
        5,
    )
    assert totals.spent_nanousd >= job.cost_nanousd and totals.in_flight == 0

    # Delete: data, model and job go; the model stops answering at once.
    deleted = await verb(client_broker, "delete", DeleteFineTune(tenant_id=a, job_id=job.job_id))
    assert deleted.ok and deleted.removed == 4  # data file, model entry, weights, job
    gone = await invoke(client_broker, a, job.model_id, held_out[0].prompt)
    assert gone.error and gone.error.code in (ErrorCode.UNKNOWN_MODEL, ErrorCode.MODEL_NOT_ALLOWED)


async def test_cancel_stops_a_running_job_and_frees_its_slot(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    gated = platform["gated"]
    assert isinstance(gated, GatedBackend)
    gated.gate.clear()
    gated.started.clear()
    tid = new_tenant_id("ftcan")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    jsonl = samples.to_jsonl(samples.examples(30))
    first = await create(client_broker, tid, jsonl, backend="gated")
    second = await create(client_broker, tid, jsonl, backend="gated")
    assert first.ok and second.ok and first.job and second.job
    # The tier allows two at once: a third is refused until one ends.
    third = await create(client_broker, tid, jsonl, backend="gated")
    assert third.error and third.error.code is ErrorCode.QUOTA_EXCEEDED and third.job is None
    await asyncio.wait_for(gated.started.wait(), 10)
    await until(client_broker, tid, first.job.job_id, {JobState.RUNNING})
    cancelled = await verb(
        client_broker, "cancel", CancelFineTune(tenant_id=tid, job_id=first.job.job_id)
    )
    assert cancelled.ok and cancelled.job and cancelled.job.state is JobState.CANCELLED
    again = await verb(
        client_broker, "cancel", CancelFineTune(tenant_id=tid, job_id=first.job.job_id)
    )
    assert again.error and again.error.code is ErrorCode.CONFLICT
    # Its slot frees once the worker has stopped: a new job fits again.
    deadline = time.monotonic() + 10
    while (fourth := await create(client_broker, tid, jsonl, backend="gated")).error:
        assert fourth.error.code is ErrorCode.QUOTA_EXCEEDED
        assert time.monotonic() < deadline, "the cancelled job kept its slot"
        await asyncio.sleep(0.2)
    gated.gate.set()
    done = await until(client_broker, tid, second.job.job_id, {JobState.SUCCEEDED})
    assert done.model_id
    job = await until(client_broker, tid, first.job.job_id, {JobState.CANCELLED})
    assert job.model_id == ""
    assert fourth.job is not None
    await until(client_broker, tid, fourth.job.job_id, {JobState.SUCCEEDED})


async def test_training_data_with_another_tenants_canary_or_name_is_refused(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    a, b = new_tenant_id("ftleak"), new_tenant_id("ftvict")
    b_name = f"Vorlanthe Dynamics {b[-6:]}"
    await tenant(client_broker, a, Tier.ENTERPRISE)
    await tenant(client_broker, b, Tier.ENTERPRISE, name=b_name)
    canary = Canaries(b"dev").token(b)  # the test platform runs on the dev canary secret
    for poison in (f"see [{canary}]", f"as {b_name} told us"):
        rows = samples.examples(20)
        rows[7] = Example(prompt=rows[7].prompt, completion=f"{rows[7].completion} {poison}")
        refused = None
        for _ in range(50):  # leakage learns B's name from promptconfig's feed
            refused = await create(client_broker, a, samples.to_jsonl(rows))
            if refused.error and refused.error.code is ErrorCode.LEAKAGE_BLOCKED:
                break
            await asyncio.sleep(0.1)
        assert refused and refused.error and refused.error.code is ErrorCode.LEAKAGE_BLOCKED
        assert refused.job and refused.job.state is JobState.FAILED
        assert canary not in refused.error.message and b_name not in refused.error.message
    # Nothing of it was stored: no file in A's namespace.
    finetune = platform["services"]["finetune"]  # type: ignore[index]
    names = await finetune_artifacts(finetune).names(a)
    assert names == []


def finetune_artifacts(service: Service):  # type: ignore[no-untyped-def]
    from shared.finetune_store import ArtifactStore

    return ArtifactStore(service.broker.connection.jetstream())


async def test_malformed_training_data_is_refused_with_the_line(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("ftbad")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    good = samples.to_jsonl(samples.examples(12)).splitlines()
    for broken, expected in (
        ([*good[:3], '{"prompt": "x"}', *good[3:]], "line 4"),
        ([*good[:5], "not json", *good[5:]], "line 6"),
        (good[:4], "at least 10"),
    ):
        refused = await create(client_broker, tid, "\n".join(broken))
        assert refused.error and refused.error.code is ErrorCode.MALFORMED_REQUEST
        assert expected in refused.error.message


async def test_a_job_whose_worker_died_is_resumed_by_another(
    platform: dict[str, object],
    client_broker: NatsBroker,
    nats_url: str,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("ftcrash")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    data_dir = platform["data_dir"]
    assert isinstance(data_dir, Path)
    doomed_backend = GatedBackend()  # never opened: this worker dies mid-job
    doomed = finetune_app(
        ft_settings(nats_url, data_dir),
        backends={"offline": OfflineBackend(), "gated": doomed_backend},
    )
    main = platform["services"]["finetune"]  # type: ignore[index]
    await main.stop()  # only the doomed worker takes the job
    await doomed.start()
    doomed_runner = cast(FineTuneDeps, doomed.deps).runner
    try:
        created = await create(
            client_broker, tid, samples.to_jsonl(samples.examples(40)), backend="gated"
        )
        assert created.ok and created.job, created.error
        await asyncio.wait_for(doomed_backend.started.wait(), 10)
        running = await until(client_broker, tid, created.job.job_id, {JobState.RUNNING})
        assert running.attempts == 1
    finally:
        await crash(doomed, doomed_runner)
    # A fresh worker (a restarted service) with an open gate finds the silent job and
    # runs it to the end.
    reborn_backend = GatedBackend()
    reborn_backend.gate.set()
    reborn = finetune_app(
        ft_settings(nats_url, data_dir),
        backends={"offline": OfflineBackend(), "gated": reborn_backend},
    )
    platform["services"]["finetune"] = reborn  # type: ignore[index]
    await reborn.start()
    job = await until(client_broker, tid, created.job.job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state is JobState.SUCCEEDED and job.attempts == 2 and job.model_id


async def crash(service: Service, runner: Runner) -> None:
    """What a killed process leaves: no goodbye to KV, its jobs still marked as its own."""
    for sub in service.broker.subscribers:
        await sub.stop()
    for task in [*runner._loops, *runner._tasks]:
        task.cancel()
    await asyncio.gather(*runner._loops, *runner._tasks, return_exceptions=True)
    runner.local.clear()
    await service.broker.stop()


async def test_offboarding_removes_jobs_data_and_models(
    platform: dict[str, object],
    client_broker: NatsBroker,
    nats_url: str,
    new_tenant_id: Callable[[str], str],
) -> None:
    from services.access.app import make_service as access_app
    from services.access.settings import AccessSettings
    from services.retrieval.app import make_service as retrieval_app
    from services.retrieval.settings import RetrievalSettings
    from shared.messages.lifecycle import OnboardTenant
    from shared.ops import OpsClient

    data_dir = platform["data_dir"]
    assert isinstance(data_dir, Path)
    extra = [
        access_app(AccessSettings(nats_url=nats_url, data_dir=data_dir)),
        retrieval_app(RetrievalSettings(nats_url=nats_url, data_dir=data_dir)),
    ]
    for service in extra:
        await service.start()
    try:
        tid = new_tenant_id("ftoff")
        async with OpsClient(nats_url) as ops:
            onboarded = await ops.onboard(
                OnboardTenant(tenant_id=tid, name="Offboard Ltd", tier=Tier.ENTERPRISE)
            )
            assert onboarded.ok, onboarded.error
            created = await create(client_broker, tid, samples.to_jsonl(samples.examples(30)))
            assert created.ok and created.job
            job = await until(client_broker, tid, created.job.job_id, {JobState.SUCCEEDED})
            kv = await client_broker.connection.jetstream().key_value(FINETUNE_BUCKET)
            assert await kv_keys(kv, f"{tid}.>")
            receipt = await ops.offboard(tid)
        assert receipt.ok, receipt.error
        # 1 job + 1 model entry + 2 files (training data, weights).
        assert receipt.removed["finetune_items"] == 4
        assert await kv_keys(kv, f"{tid}.>") == []
        finetune = platform["services"]["finetune"]  # type: ignore[index]
        assert await finetune_artifacts(finetune).names(tid) == []
        gone = await invoke(client_broker, tid, job.model_id, "Customer message: hi")
        assert gone.error and gone.error.code is ErrorCode.UNKNOWN_MODEL
    finally:
        for service in extra:
            await service.stop()


async def test_pii_in_training_data_follows_the_leakage_policy_before_it_is_stored(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    from services.finetune.runner import data_object

    tid = new_tenant_id("ftpii")
    await tenant(client_broker, tid, Tier.ENTERPRISE)
    rows = samples.examples(20)
    rows[3] = Example(
        prompt=rows[3].prompt + " Mail me at jo.bloggs@example.org",
        completion=rows[3].completion,
    )
    created = await create(client_broker, tid, samples.to_jsonl(rows))
    assert created.ok and created.job, created.error
    # The platform default redacts PII: the job goes on, with the address cut out.
    finetune = platform["services"]["finetune"]  # type: ignore[index]
    stored = await finetune_artifacts(finetune).get(tid, data_object(created.job.job_id))
    assert stored is not None
    text = stored.decode()
    assert "jo.bloggs@example.org" not in text and "Mail me at [EMAIL]" in text
    assert len(stored.splitlines()) == 20
    job = await until(client_broker, tid, created.job.job_id, {JobState.SUCCEEDED})
    assert job.model_id


async def test_the_sweeper_fails_an_interrupted_admission_and_frees_lost_slots(
    platform: dict[str, object], client_broker: NatsBroker, new_tenant_id: Callable[[str], str]
) -> None:
    """What a replica killed in the middle of a create leaves: a job stuck in
    "validating" and its quota slot; or a slot whose job was never written."""
    from datetime import timedelta

    from shared.finetune_store import JobStore, QuotaState
    from shared.messages.base import utcnow

    tid = new_tenant_id("ftadm")
    store = await JobStore.open(client_broker.connection.jetstream())
    long_ago = utcnow() - timedelta(hours=1)
    stuck = FineTuneJob(
        job_id="ftjob-00000000deadbeef",
        tenant_id=tid,
        backend="offline",
        base_model=BASE,
        state=JobState.VALIDATING,
        epochs=3,
        created_at=long_ago,
        updated_at=long_ago,
    )
    await store.save_job(stuck, 0)
    slots = QuotaState(
        month=long_ago.strftime("%Y-%m"), created=2, active=[stuck.job_id, "ftjob-0000000000000bad"]
    )
    await store.save_quota(tid, slots, 0)
    job = await until(client_broker, tid, stuck.job_id, {JobState.FAILED}, timeout=15)
    assert "admission was interrupted" in job.error
    deadline = time.monotonic() + 10
    while (await store.quota(tid))[0].active:
        assert time.monotonic() < deadline, "slots were never freed"
        await asyncio.sleep(0.1)
