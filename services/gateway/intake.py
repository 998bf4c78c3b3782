"""Turning raw bytes from a client into a validated CreateCompletion, or a clear refusal."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import ValidationError

from shared.messages.base import ErrorCode, ErrorInfo, new_id
from shared.messages.completions import CreateCompletion
from shared.service import summarise_validation
from shared.tenancy import UNATTRIBUTED, describe_raw, is_valid_tenant_id

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
    """`fallback_id` names the refusal of a body with no usable request_id (e.g. the
    durable request's Nats-Msg-Id), so its sender can still match the error."""
    request_id = request_id_of(body, fallback_id)
    if not is_valid_tenant_id(subject_tenant):
        return Rejected(
            UNATTRIBUTED,
            request_id,
            ErrorInfo(
                code=ErrorCode.INVALID_TENANT,
                message=f"invalid tenant id {describe_raw(subject_tenant)} in subject",
            ),
            describe_raw(subject_tenant),
        )
    try:
        request = CreateCompletion.model_validate_json(body)
    except ValidationError as exc:
        code = (
            ErrorCode.INVALID_TENANT
            if any(err["loc"][:1] == ("tenant_id",) for err in exc.errors())
            else ErrorCode.MALFORMED_REQUEST
        )
        return Rejected(
            subject_tenant,
            request_id,
            ErrorInfo(code=code, message=f"malformed request: {summarise_validation(exc)}"),
            subject_tenant,
        )
    if "request_id" not in request.model_fields_set and fallback_id:
        # No id of the client's own: answer under the one it does know (Nats-Msg-Id).
        request = request.model_copy(update={"request_id": request_id})
    if request.tenant_id != subject_tenant:
        return Rejected(
            subject_tenant,
            request.request_id,
            ErrorInfo(
                code=ErrorCode.INVALID_TENANT,
                message="tenant_id in the message does not match the subject's tenant",
            ),
            subject_tenant,
        )
    return request


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
