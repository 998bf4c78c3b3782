"""Fine-tuning: time from submit to a usable model, and the quality it buys.

The platform runs as `make run` starts it (every service its own process, auth on). An
enterprise tenant submits a 200-example training set (services.finetune.samples, seed
7) to the offline backend, 3 epochs. Timed from the create request to the first answer
llm serves from the new model (so: validation, leakage scan, storage, metering hold,
queueing, training, registration and the model's first load). Three jobs, median.

Quality: 200 fresh examples (seed 2026, no prompt shared with the training set) asked through llm,
once of the fine-tuned model and once of the base offline model, each answer scored by
token-F1 against the reference completion (shared.tuned_model.token_f1: multiset
overlap of lower-cased tokens, SQuAD-style), averaged. Echoing the prompt back is shown
as a second floor.

    python -m bench finetune
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from services.finetune import samples
from shared import natsserver, subjects
from shared.bus import call
from shared.launcher import Platform
from shared.messages.finetune import (
    CreateFineTune,
    FineTuneCreated,
    FineTuneFound,
    FineTuneJob,
    ShowFineTune,
)
from shared.messages.lifecycle import OnboardTenant
from shared.messages.llm import ChatMessage, InvokeModel, ModelInvoked
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.tuned_model import token_f1

SERVICES = (
    "access",
    "promptconfig",
    "audit",
    "metering",
    "retrieval",
    "leakage",
    "llm",
    "finetune",
)
BASE = "offline-extractive"
RUNS = 3
TRAIN, HELD_OUT = 200, 200


async def _invoke(ops: OpsClient, tid: str, model: str, prompt: str) -> ModelInvoked:
    return await call(
        ops.nc,
        subjects.service("llm", "invoke", tid),
        InvokeModel(
            tenant_id=tid,
            model=model,
            allowed_models=[BASE, model],
            system="",
            messages=[ChatMessage(role="user", content=prompt)],
            max_tokens=256,
        ),
        ModelInvoked,
        30,
    )


async def _one_job(ops: OpsClient, tid: str, jsonl: str) -> tuple[float, FineTuneJob]:
    started = time.perf_counter()
    created = await call(
        ops.nc,
        subjects.service("finetune", "create", tid),
        CreateFineTune(tenant_id=tid, base_model=BASE, training_jsonl=jsonl, epochs=3),
        FineTuneCreated,
        60,
    )
    if created.job is None:
        raise RuntimeError(f"create refused: {created.error}")
    while True:
        shown = await call(
            ops.nc,
            subjects.service("finetune", "show", tid),
            ShowFineTune(tenant_id=tid, job_id=created.job.job_id),
            FineTuneFound,
            10,
        )
        assert shown.job is not None
        if shown.job.state.terminal:
            break
        await asyncio.sleep(0.02)
    if not shown.job.model_id:
        raise RuntimeError(f"job ended {shown.job.state}: {shown.job.error}")
    first = await _invoke(ops, tid, shown.job.model_id, "Customer message: hello")
    if not first.ok:
        raise RuntimeError(f"model not usable: {first.error}")
    return time.perf_counter() - started, shown.job


async def _measure(platform: Platform) -> dict[str, Any]:
    user, password = platform.ops_credentials
    async with OpsClient(platform.nats_url, user=user, password=password, timeout_s=60) as ops:
        tid = f"bench-ft-{uuid.uuid4().hex[:6]}"
        done = await ops.onboard(
            OnboardTenant(tenant_id=tid, name="Bench Fjord Support", tier=Tier.ENTERPRISE)
        )
        if not done.ok:
            raise RuntimeError(f"onboarding failed: {done.error}")
        training = samples.examples(TRAIN, seed=7)
        jsonl = samples.to_jsonl(training)
        timings, jobs = [], []
        for _ in range(RUNS):
            seconds, job = await _one_job(ops, tid, jsonl)
            timings.append(seconds)
            jobs.append(job)
        model = jobs[-1].model_id
        held_out = samples.examples(HELD_OUT, seed=2026, unseen=training)
        tuned, base, echo = [], [], []
        sample_answer = ""
        for example in held_out:
            answer = await _invoke(ops, tid, model, example.prompt)
            sample_answer = sample_answer or answer.text
            plain = await _invoke(ops, tid, BASE, example.prompt)
            tuned.append(token_f1(answer.text, example.completion))
            base.append(token_f1(plain.text, example.completion))
            echo.append(token_f1(example.prompt, example.completion))
    return {
        "train_examples": TRAIN,
        "epochs": 3,
        "submit_to_usable_s": {
            "median": round(statistics.median(timings), 3),
            "runs": [round(t, 3) for t in timings],
        },
        "held_out_examples": HELD_OUT,
        "token_f1": {
            "fine_tuned": round(statistics.fmean(tuned), 4),
            "base_offline": round(statistics.fmean(base), 4),
            "echo_prompt": round(statistics.fmean(echo), 4),
            "gain_over_base": round(statistics.fmean(tuned) - statistics.fmean(base), 4),
        },
        "job_metrics": jobs[-1].metrics,
        "job_cost_nanousd": jobs[-1].cost_nanousd,
        "example": {"prompt": held_out[0].prompt, "answer": sample_answer},
    }


def run(results: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        platform = Platform(
            data_dir=Path(tmp),
            nats_url=f"nats://127.0.0.1:{natsserver.free_port()}",
            services=SERVICES,
            extra_env={"ANTHROPIC_API_KEY": ""},
        )
        platform.start(timeout_s=120)
        try:
            return asyncio.run(_measure(platform))
        finally:
            platform.stop()


if __name__ == "__main__":
    import json
    import sys

    sys.stdout.write(json.dumps(run(Path("bench-results")), indent=2) + "\n")
