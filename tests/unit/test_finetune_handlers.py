"""finetune's handlers over a stand-in Manager: what a refusal answers and audits."""

from __future__ import annotations

from typing import Any, cast

from services.finetune.handlers import Deps, deprovision, show
from services.finetune.manage import NOT_FOUND, JobRefused
from shared.messages.audit import AuditEventType
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.finetune import ShowFineTune
from shared.messages.lifecycle import DeprovisionTenant
from tests.support.handlers import recording_trail


class Manager:
    def __init__(self, refusal: ErrorInfo) -> None:
        self.refusal = refusal

    async def show(self, tenant_id: str, job_id: str) -> Any:
        raise JobRefused(self.refusal)

    async def deprovision(self, tenant_id: str, request_id: str) -> dict[str, int]:
        return {"jobs": 2, "models": 1}


def make(refusal: ErrorInfo = NOT_FOUND) -> tuple[Deps, list[Any]]:
    trail, events = recording_trail("finetune")
    deps = Deps(manager=cast(Any, Manager(refusal)), trail=trail, runner=cast(Any, None))
    return deps, events


async def test_an_unknown_job_is_not_found_and_audited_against_the_asking_tenant() -> None:
    deps, events = make()
    reply = await show(ShowFineTune(tenant_id="acme", job_id="ftjob-0123456789abcdef"), deps)
    assert reply.error is not None and reply.error.code is ErrorCode.NOT_FOUND
    (event,) = events
    assert (event.tenant_id, event.event_type) == ("acme", AuditEventType.ACCESS_DENIED)
    assert event.resource_id == "ftjob-0123456789abcdef"


async def test_a_refusal_other_than_not_found_is_answered_but_not_audited() -> None:
    deps, events = make(ErrorInfo(code=ErrorCode.CONFLICT, message="busy"))
    reply = await show(ShowFineTune(tenant_id="acme", job_id="ftjob-0123456789abcdef"), deps)
    assert reply.error is not None and reply.error.code is ErrorCode.CONFLICT and events == []


async def test_deprovision_reports_and_audits_what_it_removed() -> None:
    deps, events = make()
    reply = await deprovision(DeprovisionTenant(tenant_id="acme"), deps)
    assert reply.removed == 3
    assert events[-1].details == {"jobs": 2, "models": 1}
