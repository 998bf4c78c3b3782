"""Training backends behind one interface: the offline numpy trainer, and (openai.py) any
OpenAI-compatible fine-tuning API."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Protocol

from services.finetune import training
from shared import tuned_model as model
from shared.messages.finetune import FineTuneJob
from shared.offline_text import NO_ANSWER
from shared.tuned_model import Example

OFFLINE_BASE = "offline-extractive"


class TrainingFailed(Exception):
    """The backend could not train; the message is client-safe."""


@dataclass
class Progress:
    """Shared between a training run (maybe on a worker thread) and the job's heartbeat."""

    done: float = 0.0
    loss: float | None = None
    tokens_trained: int = 0
    provider_job_id: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set with `cancel` when another worker took the job over: stop without settling.
    lost: bool = False
    # Set with `cancel` when a renewed hold was refused (budget): the job fails with it.
    refused: str = ""


@dataclass(frozen=True)
class Trained:
    weights: bytes  # what llm loads (empty for a remote backend: the provider serves it)
    remote_model: str  # the provider's model name (remote backends)
    tokens_trained: int
    metrics: dict[str, float]


class Backend(Protocol):
    name: str

    def supports(self, base_model: str) -> bool: ...

    async def train(self, job: FineTuneJob, examples: list[Example], progress: Progress) -> Trained:
        """Train; raise model.Cancelled when progress.cancel is set, TrainingFailed on error."""


class OfflineBackend:
    """Trains shared.tuned_model on this machine, on a worker thread."""

    name = "offline"

    def supports(self, base_model: str) -> bool:
        return base_model == OFFLINE_BASE

    async def train(self, job: FineTuneJob, examples: list[Example], progress: Progress) -> Trained:
        return await asyncio.to_thread(_train_offline, job, examples, progress)


def _seed(job_id: str) -> int:
    return int(job_id.removeprefix("ftjob-")[:8], 16)


def _train_offline(job: FineTuneJob, examples: list[Example], progress: Progress) -> Trained:
    seed = _seed(job.job_id)
    train_set, held_out = training.split(examples, seed)
    per_epoch = sum(
        len(model.tokens(e.prompt)) + len(model.tokens(e.completion)) for e in train_set
    )

    def on_epoch(epoch: int, loss: float) -> bool:
        progress.done = epoch / job.epochs
        progress.loss = loss
        progress.tokens_trained = per_epoch * epoch
        return not progress.cancel.is_set()

    if progress.cancel.is_set():
        raise model.Cancelled
    result = training.train(train_set, job.epochs, seed=seed, on_epoch=on_epoch)
    metrics = {"train_loss": round(result.losses[-1], 4), "held_out": float(len(held_out))}
    if held_out:
        # The base offline model answers a prompt with no passages by saying it has no
        # answer; echoing the prompt is the other cheap baseline. Both are reported.
        metrics["held_out_f1_base"] = round(training.mean_f1(lambda _: NO_ANSWER, held_out), 4)
        metrics["held_out_f1_echo"] = round(training.mean_f1(lambda p: p, held_out), 4)
        metrics["held_out_f1_tuned"] = round(training.mean_f1(result.model.answer, held_out), 4)
    return Trained(
        weights=result.model.to_bytes(),
        remote_model="",
        tokens_trained=result.tokens_seen,
        metrics=metrics,
    )
