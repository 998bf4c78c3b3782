"""`tenantry finetune`: a tenant's fine-tuning jobs (create, list, show, cancel, delete).

Everything goes to the finetune service over the bus (svc.finetune.<verb>.<tid>); the
training file is read here and sent whole, so it is validated and leakage-scanned by
the service before anything is stored.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.table import Table

from shared.cli.common import (
    ActorOpt,
    JsonOpt,
    TenantOpt,
    check,
    console,
    fail,
    note,
    ops_client,
    print_json,
    run,
    valid_tenant,
)
from shared.messages.base import Reply
from shared.messages.finetune import (
    MAX_TRAINING_BYTES,
    CancelFineTune,
    CreateFineTune,
    DeleteFineTune,
    FineTuneCreated,
    FineTuneFound,
    FineTuneJob,
    FineTunesListed,
    ListFineTunes,
    ShowFineTune,
)
from shared.money import format_usd

R = TypeVar("R", bound=Reply)
finetune = typer.Typer(help="Fine-tuning jobs: a tenant's own models (enterprise tier).")
JobArg = Annotated[str, typer.Argument(help="Job id (ftjob-...).", show_default=False)]
TIMEOUT_S = 60.0  # a create scans the whole file for leakage before it answers


async def _ask(verb: str, message: BaseModel, reply_type: type[R]) -> R:
    # OpsClient's generic call: its errors (no responders, timeouts) read like every
    # other command's, and it needs only the client packages (no shared.bus).
    async with ops_client(TIMEOUT_S) as ops:
        return check(await ops.call("finetune", verb, message, reply_type, TIMEOUT_S))


@finetune.command("create")
def create(
    tenant: TenantOpt,
    base_model: Annotated[str, typer.Option("--base-model", help="Model to start from.")],
    data: Annotated[
        Path,
        typer.Option("--data", exists=True, dir_okay=False, help='JSONL: {"prompt","completion"}.'),
    ],
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, max=50, help="Passes over the examples.")
    ] = 3,
    backend: Annotated[
        str | None, typer.Option("--backend", help="offline or openai (service default).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job ends.")] = False,
    actor: ActorOpt = "ops",
    as_json: JsonOpt = False,
) -> None:
    """Submit a fine-tuning job for a tenant."""
    tid = valid_tenant(tenant)
    raw = data.read_bytes()
    if len(raw) > MAX_TRAINING_BYTES:
        fail(f"{data} is {len(raw)} bytes; one job takes at most {MAX_TRAINING_BYTES}")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        fail(f"{data} is not UTF-8 text")
    message = CreateFineTune(
        tenant_id=tid,
        base_model=base_model,
        training_jsonl=text,
        epochs=epochs,
        backend=backend,
        actor=actor,
    )
    created = run(_ask("create", message, FineTuneCreated))
    assert created.job is not None
    job = run(_wait(tid, created.job.job_id)) if wait else created.job
    if as_json:
        print_json(job)
        return
    _print_job(job)


async def _wait(tid: str, job_id: str) -> FineTuneJob:
    started, last = time.monotonic(), -1.0
    while True:
        shown = await _ask("show", ShowFineTune(tenant_id=tid, job_id=job_id), FineTuneFound)
        assert shown.job is not None
        if shown.job.progress != last:
            last = shown.job.progress
            note(f"{shown.job.state.value} {last:.0%} ({time.monotonic() - started:.1f}s)")
        if shown.job.state.terminal:
            return shown.job
        await asyncio.sleep(0.5)


@finetune.command("list")
def list_jobs(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """The tenant's jobs, newest first."""
    tid = valid_tenant(tenant)
    listed = run(_ask("list", ListFineTunes(tenant_id=tid), FineTunesListed))
    if as_json:
        print_json([job.model_dump(mode="json") for job in listed.jobs])
        return
    table = Table(title=f"{tid} fine-tuning jobs")
    for col in ("job", "state", "progress", "base", "examples", "model", "cost", "created"):
        table.add_column(col)
    for job in listed.jobs:
        table.add_row(
            job.job_id,
            job.state.value,
            f"{job.progress:.0%}",
            job.base_model,
            str(job.examples),
            job.model_id or "-",
            format_usd(job.cost_nanousd),
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@finetune.command("show")
def show(tenant: TenantOpt, job_id: JobArg, as_json: JsonOpt = False) -> None:
    """One job: state, progress, metrics, model and cost."""
    tid = valid_tenant(tenant)
    shown = run(_ask("show", ShowFineTune(tenant_id=tid, job_id=job_id), FineTuneFound))
    assert shown.job is not None
    if as_json:
        print_json(shown.job)
        return
    _print_job(shown.job)


@finetune.command("cancel")
def cancel(tenant: TenantOpt, job_id: JobArg, actor: ActorOpt = "ops") -> None:
    """Stop a queued or running job (training done so far is charged)."""
    tid = valid_tenant(tenant)
    message = CancelFineTune(tenant_id=tid, job_id=job_id, actor=actor)
    done = run(_ask("cancel", message, FineTuneFound))
    assert done.job is not None
    console.print(f"{job_id}: {done.job.state.value}")


@finetune.command("delete")
def delete(tenant: TenantOpt, job_id: JobArg, actor: ActorOpt = "ops") -> None:
    """Delete a finished job with its training data and model."""
    tid = valid_tenant(tenant)
    message = DeleteFineTune(tenant_id=tid, job_id=job_id, actor=actor)
    done = run(_ask("delete", message, FineTuneFound))
    console.print(f"{job_id}: deleted ({done.removed} stored items removed)")


def _print_job(job: FineTuneJob) -> None:
    rows = [
        ("job", job.job_id),
        ("state", job.state.value),
        ("progress", f"{job.progress:.0%}"),
        ("backend", job.backend),
        ("base model", job.base_model),
        ("examples", str(job.examples)),
        ("epochs", str(job.epochs)),
        ("training tokens", f"{job.training_tokens} per epoch"),
        ("model", job.model_id or "-"),
        ("cost", format_usd(job.cost_nanousd)),
        ("attempts", str(job.attempts)),
    ]
    rows += [(name, f"{value:g}") for name, value in sorted(job.metrics.items())]
    if job.error:
        rows.append(("error", job.error))
    for name, value in rows:
        console.print(f"{name:>16}  {value}", markup=False)
