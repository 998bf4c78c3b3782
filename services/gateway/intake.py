"""Turning raw bytes from a client into a validated CreateCompletion, or a clear refusal."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shared.intake import Refusal, admit
from shared.messages.base import ErrorCode, ErrorInfo, new_id
from shared.messages.completions import CreateCompletion
from shared.tenancy import UNATTRIBUTED, describe_raw

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Rejected:
    """A request refused at the door. `tenant_id` is UNATTRIBUTED if the id was invalid."""

    tenant_id: str
    request_id: str
    error: ErrorInfo
    raw_tenant: str


def parse(
    subject_tenant: str, body: bytes, fallback_id: str | None = None
) -> CreateCompletion | Rejected:
    """shared.intake.admit, plus what a completion's sender needs to match a refusal.

    `fallback_id` names the refusal of a body with no usable request_id (e.g. the
    durable request's Nats-Msg-Id), so its sender can still match the error."""
    admitted = admit(subject_tenant, body, CreateCompletion)
    if isinstance(admitted, Refusal):
        info = admitted.error
        if "tenant_id" in admitted.fields:
            # A tenant_id that is not even an id is a denial, not a typo in the body.
            info = ErrorInfo(code=ErrorCode.INVALID_TENANT, message=info.message)
        # The subject's token, printable, for the audit row (never the raw bytes).
        raw = describe_raw(subject_tenant) if admitted.tenant_id == UNATTRIBUTED else subject_tenant
        return Rejected(admitted.tenant_id, request_id_of(body, fallback_id), info, raw)
    if "request_id" not in admitted.model_fields_set and fallback_id:
        # No id of the client's own: answer under the one it does know (Nats-Msg-Id).
        return admitted.model_copy(update={"request_id": request_id_of(body, fallback_id)})
    return admitted


def request_id_of(body: bytes, fallback_id: str | None = None) -> str:
    """Best effort: keep the client's request id on errors so it can match the reply.
    Never raises, whatever the bytes (deep nesting raises RecursionError in json)."""
    fallback = fallback_id if fallback_id and _REQUEST_ID.fullmatch(fallback_id) else new_id()
    try:
        value = json.loads(body).get("request_id")
    except Exception:
        return fallback
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else fallback


def message_id_of(headers: dict[str, str] | None) -> str | None:
    """The publisher's Nats-Msg-Id, if it can name a completion subject."""
    value = (headers or {}).get("Nats-Msg-Id")
    return value if value and _REQUEST_ID.fullmatch(value) else None
