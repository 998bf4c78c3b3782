"""finetune's messages: a tenant's fine-tuning jobs, their events and the models they make."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.base import Envelope, Reply

# A job id is a subject-safe token; a model id is "ft:<base>:<suffix>" (OpenAI's shape).
JOB_ID = r"^ftjob-[a-f0-9]{16}$"
# One create request carries the whole training file: it must fit in NATS's default
# 1 MB payload with the envelope around it, JSON escaping (quotes, newlines) included.
MAX_TRAINING_BYTES = 600_000


class JobState(StrEnum):
    VALIDATING = "validating"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class FineTuneJob(BaseModel):
    """A job as stored (JetStream KV) and shown to its owner."""

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(pattern=JOB_ID, description="The job's id.")
    tenant_id: str = Field(description="Owner.")
    backend: str = Field(description="Training backend: offline or openai.")
    base_model: str = Field(description="Model the job starts from.")
    state: JobState = Field(description="Where the job is in its lifecycle.")
    epochs: int = Field(ge=1, le=50, description="Passes over the training examples.")
    examples: int = Field(default=0, ge=0, description="Training examples accepted.")
    training_tokens: int = Field(
        default=0, ge=0, description="Tokens in one pass over the examples (billed per epoch)."
    )
    progress: float = Field(default=0.0, ge=0, le=1, description="Share of training done.")
    model_id: str = Field(default="", description="The fine-tuned model, once succeeded.")
    error: str = Field(default="", description="Why the job failed (client-safe).")
    metrics: dict[str, float] = Field(default_factory=dict, description="Loss, held-out F1.")
    reservation_id: str = Field(default="", description="metering's hold for the training.")
    cost_nanousd: int = Field(default=0, ge=0, description="Charged so far (settled holds).")
    settled_tokens: int = Field(
        default=0,
        ge=0,
        description="Training tokens already settled (a long job settles "
        "its hold and takes a new one before metering's hold would expire).",
    )
    held_at: datetime | None = Field(default=None, description="When the current hold was taken.")
    provider_job_id: str = Field(default="", description="The remote backend's job id.")
    worker: str = Field(default="", description="Replica running it; empty when none.")
    heartbeat_at: datetime | None = Field(default=None, description="Its worker's last sign.")
    attempts: int = Field(default=0, ge=0, description="Times a worker started it.")
    created_at: datetime = Field(description="When it was submitted.")
    updated_at: datetime = Field(description="Last state change.")


class CreateFineTune(Envelope):
    base_model: str = Field(min_length=1, max_length=100, description="Base model to tune.")
    training_jsonl: str = Field(
        max_length=MAX_TRAINING_BYTES,
        description='JSONL, one {"prompt": ..., "completion": ...} object per line.',
    )
    epochs: int = Field(default=3, ge=1, le=50, description="Passes over the examples.")
    backend: str | None = Field(
        default=None, max_length=20, description="offline or openai; the service default if unset."
    )
    actor: str = Field(default="ops", max_length=120, description="Who submitted it.")


class FineTuneCreated(Reply):
    job: FineTuneJob | None = Field(default=None, description="The job, when accepted.")


class ListFineTunes(Envelope):
    """The tenant's own jobs, newest first."""


class FineTunesListed(Reply):
    jobs: list[FineTuneJob] = Field(default_factory=list, description="Newest first.")


class ShowFineTune(Envelope):
    job_id: str = Field(pattern=JOB_ID, description="The job to show.")


class CancelFineTune(Envelope):
    job_id: str = Field(pattern=JOB_ID, description="The job to cancel.")
    actor: str = Field(default="ops", max_length=120, description="Who cancels.")


class DeleteFineTune(Envelope):
    job_id: str = Field(pattern=JOB_ID, description="Job whose data and model go.")
    actor: str = Field(default="ops", max_length=120, description="Who deletes.")


class FineTuneFound(Reply):
    """Answer to show, cancel and delete: the job as it now stands."""

    job: FineTuneJob | None = Field(default=None, description="The job.")
    removed: int = Field(default=0, ge=0, description="delete: stored items removed.")


class FineTuneChanged(Envelope):
    """evt.<tid>.finetune: one per lifecycle transition (and per progress step)."""

    job_id: str = Field(pattern=JOB_ID, description="The job.")
    state: JobState = Field(description="State after the transition.")
    progress: float = Field(ge=0, le=1, description="Share of training done.")
    model_id: str = Field(default="", description="Set once succeeded.")
    error: str = Field(default="", description="Set when failed.")


class FineTuneModelInfo(BaseModel):
    """What llm needs to serve an owned offline model (no weights: those are stored)."""

    model_config = ConfigDict(frozen=True)

    model_id: str = Field(description="ft:<base>:<suffix>.")
    job_id: str = Field(pattern=JOB_ID, description="Job that made it.")
    backend: str = Field(description="offline or openai.")
    object_name: str = Field(default="", description="Weights in the tenant's object store.")
    created_at: datetime = Field(description="When it became usable.")
