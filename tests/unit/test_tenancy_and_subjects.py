from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared import subjects
from shared.messages.base import Envelope
from shared.tenancy import (
    MAX_TENANT_ID_LENGTH,
    UNATTRIBUTED,
    InvalidTenantId,
    is_valid_tenant_id,
    validate_tenant_id,
)

pytestmark = pytest.mark.unit

GOOD = ["acme", "a", "tenant-123", "9lives", "a-b-c", "x" * MAX_TENANT_ID_LENGTH]
BAD = [
    "",
    "acme.corp",
    "acme*",
    "acme>",
    ">",
    "*",
    "acme corp",
    " acme",
    "acme\n",
    "Acme",
    "ACME",
    "acmé",
    "\u0430cme",  # Cyrillic a
    "-acme",
    "acme-",
    "ac--me",
    "acme_corp",
    "acme/x",
    "acme;drop",
    "acme'",
    "x" * (MAX_TENANT_ID_LENGTH + 1),
    UNATTRIBUTED,
]


@pytest.mark.parametrize("tid", GOOD)
def test_valid_ids_pass(tid: str) -> None:
    assert validate_tenant_id(tid) == tid


@pytest.mark.parametrize("tid", BAD)
def test_invalid_ids_are_refused(tid: str) -> None:
    assert not is_valid_tenant_id(tid)
    with pytest.raises(InvalidTenantId) as err:
        validate_tenant_id(tid)
    # The error is readable and escapes the raw value (no raw newlines or control chars).
    assert "invalid tenant id" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [None, 123, b"acme", ["acme"]])
def test_non_strings_are_refused(value: object) -> None:
    assert not is_valid_tenant_id(value)
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(value)


@pytest.mark.parametrize("tid", BAD)
def test_models_refuse_invalid_ids(tid: str) -> None:
    with pytest.raises(ValidationError):
        Envelope(tenant_id=tid)


def test_envelope_ids_are_unique_and_versioned() -> None:
    a, b = Envelope(tenant_id="acme"), Envelope(tenant_id="acme")
    assert a.event_id != b.event_id and a.request_id != b.request_id
    assert a.schema_version == 1 and a.occurred_at.tzinfo is not None
    assert Envelope.model_validate_json(a.model_dump_json()) == a


def test_subject_builders() -> None:
    assert subjects.request("acme") == "tenant.acme.request"
    assert subjects.request_sync("acme") == "tenant.acme.request.sync"
    assert subjects.completion("acme", "r1") == "tenant.acme.completion.r1"
    assert subjects.ingest("acme") == "tenant.acme.ingest"
    assert subjects.service("retrieval", "search", "acme") == "svc.retrieval.search.acme"
    assert subjects.service_all("retrieval", "search") == "svc.retrieval.search.*"
    assert subjects.audit_event("acme") == "evt.acme.audit"
    assert subjects.audit_event(UNATTRIBUTED) == f"evt.{UNATTRIBUTED}.audit"
    assert subjects.cost_event("acme") == "evt.acme.cost"


@pytest.mark.parametrize("tid", ["acme.*", ">", "a b", "", "ACME"])
def test_subject_builders_refuse_bad_tenants(tid: str) -> None:
    for build in (subjects.request, subjects.ingest, subjects.completions, subjects.audit_event):
        with pytest.raises(ValueError):
            build(tid)


@pytest.mark.parametrize("rid", ["a.b", "*", ">", "", "x" * 65, "a b"])
def test_subject_builders_refuse_bad_request_ids(rid: str) -> None:
    with pytest.raises(ValueError):
        subjects.completion("acme", rid)
