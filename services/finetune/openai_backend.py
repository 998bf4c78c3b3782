"""The OpenAI-compatible fine-tuning backend, through the official `openai` SDK.

Files upload, jobs create / retrieve / cancel / events: the API OpenAI, Together and
other providers serve. The tenant's examples (already validated and leakage-scanned)
go up as chat-format JSONL; the job is polled until it ends, with progress read from its
step events. A worker that takes over a job after a crash finds the provider's job id
in the job record and resumes polling it instead of training twice.

Errors reaching the job record are client-safe: status and error type or code, never
the key, headers or request bodies.
"""

from __future__ import annotations

import asyncio
import json

import openai

from services.finetune.backends import Progress, Trained, TrainingFailed
from services.finetune.settings import FineTuneSettings
from shared.logging import get_logger
from shared.messages.finetune import FineTuneJob
from shared.tuned_model import Cancelled, Example, tokens

log = get_logger("tenantry.finetune.openai")
_REMOTE_TERMINAL = {"succeeded", "failed", "cancelled"}


def chat_jsonl(examples: list[Example]) -> bytes:
    return "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": e.prompt},
                    {"role": "assistant", "content": e.completion},
                ]
            }
        )
        + "\n"
        for e in examples
    ).encode()


def _safe(exc: openai.OpenAIError) -> TrainingFailed:
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        kind = error.get("type") or error.get("code") if isinstance(error, dict) else None
        kind = kind if isinstance(kind, str) and kind.replace("_", "").isalnum() else ""
        return TrainingFailed(f"fine-tuning provider error: HTTP {exc.status_code} {kind}".strip())
    if isinstance(exc, openai.APIConnectionError):
        return TrainingFailed("could not reach the fine-tuning provider")
    return TrainingFailed(f"fine-tuning provider call failed ({type(exc).__name__})")


class OpenAIBackend:
    name = "openai"

    def __init__(self, client: openai.AsyncOpenAI, poll_s: float = 2.0) -> None:
        self._client = client
        self._poll_s = poll_s

    @classmethod
    def from_settings(cls, settings: FineTuneSettings) -> OpenAIBackend:
        if settings.openai_api_key is None:
            raise ValueError("the openai backend needs OPENAI_API_KEY")
        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            max_retries=2,
            timeout=60.0,
        )
        return cls(client, settings.finetune_poll_s)

    def supports(self, base_model: str) -> bool:
        # The provider decides which of its models can be tuned; ours are not its.
        return not base_model.startswith(("offline", "ft:"))

    async def train(self, job: FineTuneJob, examples: list[Example], progress: Progress) -> Trained:
        try:
            return await self._train(job, examples, progress)
        except openai.OpenAIError as exc:
            failure = _safe(exc)
            log.warning("finetune.openai_error", job_id=job.job_id, error=str(failure))
            raise failure from None

    async def _train(
        self, job: FineTuneJob, examples: list[Example], progress: Progress
    ) -> Trained:
        remote_id = job.provider_job_id
        if not remote_id:
            uploaded = await self._client.files.create(
                file=(f"{job.job_id}.jsonl", chat_jsonl(examples)), purpose="fine-tune"
            )
            created = await self._client.fine_tuning.jobs.create(
                model=job.base_model,
                training_file=uploaded.id,
                hyperparameters={"n_epochs": job.epochs},
                suffix=job.job_id.removeprefix("ftjob-")[:8],
            )
            remote_id = created.id
        progress.provider_job_id = remote_id
        per_epoch = sum(len(tokens(e.prompt)) + len(tokens(e.completion)) for e in examples)
        while True:
            if progress.cancel.is_set():
                await self._client.fine_tuning.jobs.cancel(remote_id)
                raise Cancelled
            remote = await self._client.fine_tuning.jobs.retrieve(remote_id)
            if remote.status in _REMOTE_TERMINAL:
                break
            progress.done = await self._progress(remote_id, progress.done)
            progress.tokens_trained = int(per_epoch * job.epochs * progress.done)
            await asyncio.sleep(self._poll_s)
        if remote.status == "cancelled":
            raise Cancelled
        if remote.status == "failed" or not remote.fine_tuned_model:
            code = remote.error.code if remote.error and remote.error.code else "unknown"
            raise TrainingFailed(f"the provider's fine-tuning job failed ({code[:60]})")
        trained = remote.trained_tokens or per_epoch * job.epochs
        progress.tokens_trained = trained
        return Trained(
            weights=b"",
            remote_model=remote.fine_tuned_model,
            tokens_trained=trained,
            metrics={"trained_tokens": float(trained)},
        )

    async def _progress(self, remote_id: str, last: float) -> float:
        """Share done, from the newest step event that says "step" of "total_steps"."""
        page = await self._client.fine_tuning.jobs.list_events(remote_id, limit=20)
        for event in page.data:
            data = event.data if isinstance(event.data, dict) else {}
            step, total = data.get("step"), data.get("total_steps")
            if isinstance(step, int) and isinstance(total, int) and total > 0:
                return max(last, min(step / total, 0.99))
        return last
