"""The intake check every subscriber applies, and the one way to build a typed reply.

`admit` is pure and synchronous: no audit, no I/O, one JSON parse. A refusal says whether
it is an access denial (a bad or mismatched tenant token), which the caller audits, or a
malformed body, which it only answers. `reply_ok` and `error_reply` take the same
arguments: the reply type, what the reply answers (a request, or a refusal), then the
payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from shared.audit import Correlated
from shared.messages.base import Envelope, ErrorCode, ErrorInfo, Reply, new_id
from shared.tenancy import UNATTRIBUTED, is_valid_tenant_id

Q = TypeVar("Q", bound=Envelope)
P = TypeVar("P", bound=Reply)

INVALID_TENANT_IN_SUBJECT = "invalid tenant id in subject"
TENANT_MISMATCH = "message tenant_id does not match the subject's tenant"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message refused at intake. `tenant_id` is UNATTRIBUTED if the subject's token is
    not a valid tenant id; `denied` marks an access denial (audited by the caller);
    `fields` names the top-level fields of a body that did not validate."""

    tenant_id: str
    request_id: str
    error: ErrorInfo
    denied: bool
    fields: frozenset[str] = frozenset()


def admit(subject_tenant: str, body: bytes, request_type: type[Q]) -> Q | Refusal:
    """The message as `request_type` if the subject's tenant token is a valid id, the body
    parses, and the body's tenant_id is the subject's; else why not."""
    if not is_valid_tenant_id(subject_tenant):
        info = ErrorInfo(code=ErrorCode.INVALID_TENANT, message=INVALID_TENANT_IN_SUBJECT)
        return Refusal(UNATTRIBUTED, new_id(), info, denied=True)
    try:
        request = request_type.model_validate_json(body)
    except ValidationError as exc:
        info = ErrorInfo(
            code=ErrorCode.MALFORMED_REQUEST,
            message=f"malformed {request_type.__name__}: {summarise_validation(exc)}",
        )
        fields = frozenset(str(err["loc"][0]) for err in exc.errors() if err["loc"])
        return Refusal(subject_tenant, new_id(), info, denied=False, fields=fields)
    if request.tenant_id != subject_tenant:
        info = ErrorInfo(code=ErrorCode.INVALID_TENANT, message=TENANT_MISMATCH)
        return Refusal(subject_tenant, request.request_id, info, denied=True)
    return request


def summarise_validation(exc: ValidationError) -> str:
    """Field paths and reasons only: pydantic's default message echoes the input."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def reply_ok(reply_type: type[P], about: Correlated, **fields: object) -> P:
    return reply_type(tenant_id=about.tenant_id, request_id=about.request_id, **fields)


def error_reply(reply_type: type[P], about: Correlated, error: ErrorInfo) -> P:
    return reply_type(tenant_id=about.tenant_id, request_id=about.request_id, error=error)
