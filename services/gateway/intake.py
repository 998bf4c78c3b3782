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


def parse(subject_tenant: str, body: bytes) -> CreateCompletion | Rejected:
    request_id = _request_id_of(body)
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


def _request_id_of(body: bytes) -> str:
    """Best effort: keep the client's request id on errors so it can match the reply."""
    try:
        value = json.loads(body).get("request_id")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return new_id()
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else new_id()
