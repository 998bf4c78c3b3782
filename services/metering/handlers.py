"""metering's handlers: thin wrappers over Meter, plus the audit and cost events."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.nats import NatsBroker

from services.metering import provisioning
from services.metering.ledger import Rejected, Settled, SettleKind
from services.metering.meter import Busy, Meter, UnknownReservation
from services.metering.state import month_of_reservation
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import publish_event
from shared.intake import error_reply, reply_ok
from shared.logging import get_logger
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.lifecycle import (
    DeprovisionTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantProvisioned,
)
from shared.messages.metering import (
    AuthorizeRequest,
    BudgetAlerted,
    CostRecorded,
    MeteringTotals,
    QueryMeteringTotals,
    RequestAuthorized,
    SettleUsage,
    UsageSettled,
)
from shared.service import Handlers, Rpc

SERVICE = "metering"

log = get_logger("tenantry.metering")

_BUSY = ErrorInfo(
    code=ErrorCode.UNAVAILABLE,
    message="metering is busy with concurrent updates for this tenant; retry shortly",
    retryable=True,
)


@dataclass(frozen=True)
class Deps:
    meter: Meter
    trail: AuditTrail
    broker: NatsBroker


async def authorize(msg: AuthorizeRequest, deps: Deps) -> RequestAuthorized:
    try:
        decision = await deps.meter.authorize(msg)
    except Busy:
        return error_reply(RequestAuthorized, msg, _BUSY)
    if isinstance(decision, Rejected):
        await _audit_refusal(deps.trail, msg, decision)
        return error_reply(RequestAuthorized, msg, decision.error)
    return reply_ok(
        RequestAuthorized,
        msg,
        reservation_id=decision.reservation_id,
        reserved_nanousd=decision.amount_nanousd,
    )


async def settle(msg: SettleUsage, deps: Deps) -> UsageSettled:
    try:
        outcome = await deps.meter.settle(msg)
    except Busy:
        return error_reply(UsageSettled, msg, _BUSY)
    except UnknownReservation as exc:
        return await _not_found(deps.trail, msg, str(exc))
    if outcome.kind is SettleKind.UNKNOWN:
        # Never issued here, or settled/expired so long ago it was forgotten.
        # Charging could bill a repeat twice, so nothing is charged; ops see it.
        return await _not_found(
            deps.trail,
            msg,
            "reservation is neither in flight nor recently settled; nothing was charged",
        )
    if not outcome.priced:
        await _audit_settle_error(
            deps.trail,
            msg,
            f"model {msg.model!r} has no price in table {deps.meter.prices.version}; "
            "charged the reserved worst case",
        )
    if outcome.cost_nanousd:
        # Repeats publish again with the same event_id: if the first publish was
        # lost the repeat heals it, otherwise JetStream de-duplicates it.
        await publish_event(deps.broker, _cost_event(msg, outcome, deps), _cost_subject(msg))
    for threshold in outcome.crossed:
        # The KV write already marked the threshold as sent, so no other replica
        # (nor a repeat of this settle) sends it again.
        await publish_event(
            deps.broker, _budget_event(msg, outcome, threshold), _budget_subject(msg)
        )
        await _audit_budget_alert(deps.trail, msg, outcome, threshold)
    return reply_ok(UsageSettled, msg, cost_nanousd=outcome.cost_nanousd)


async def provision(msg: ProvisionTenant, deps: Deps) -> TenantProvisioned:
    created = await provisioning.provision(deps.meter, msg.tenant_id, msg.limits)
    return reply_ok(TenantProvisioned, msg, created=created)


async def deprovision(msg: DeprovisionTenant, deps: Deps) -> TenantDeprovisioned:
    removed = await provisioning.deprovision(deps.meter, msg.tenant_id)
    await deps.trail.record_for(
        msg,
        event_type=AuditEventType.DELETION,
        action="metering.deprovision",
        resource_type="metering_state",
        details={"entries": removed},
    )
    return reply_ok(TenantDeprovisioned, msg, removed=removed)


async def totals(msg: QueryMeteringTotals, deps: Deps) -> MeteringTotals:
    month = msg.month or deps.meter.current_month()
    state = await deps.meter.totals(msg.tenant_id, month)
    if state is None:
        return reply_ok(MeteringTotals, msg, month=month)
    return reply_ok(
        MeteringTotals,
        msg,
        month=month,
        spent_nanousd=state.spent_nanousd,
        reserved_nanousd=state.reserved_nanousd,
        budget_nanousd=state.budget_nanousd,
        requests_settled=state.settled_count,
        requests_charged=state.charged_count,
        in_flight=len(state.reservations),
        alerts_pct=sorted(state.alerts),
    )


async def _not_found(trail: AuditTrail, msg: SettleUsage, message: str) -> UsageSettled:
    log.warning("metering.settle_not_found", reservation_id=msg.reservation_id)
    await _audit_settle_error(trail, msg, message)
    info = ErrorInfo(code=ErrorCode.NOT_FOUND, message=message)
    return error_reply(UsageSettled, msg, info)


def _cost_subject(msg: SettleUsage) -> str:
    return subjects.cost_event(msg.tenant_id)


def _cost_event(msg: SettleUsage, outcome: Settled, deps: Deps) -> CostRecorded:
    version = deps.meter.prices.version
    return CostRecorded(
        tenant_id=msg.tenant_id,
        request_id=msg.request_id,
        # One cost event per reservation, whatever number of times it is settled.
        event_id=f"cost-{msg.reservation_id}",
        occurred_at=deps.meter.booked_at(msg.reservation_id),
        model=msg.model,
        usage=msg.usage,
        cost_nanousd=outcome.cost_nanousd,
        price_version=version if outcome.priced else f"{version}+unpriced-hold",
        outcome=msg.outcome,
    )


def _budget_subject(msg: SettleUsage) -> str:
    return subjects.budget_event(msg.tenant_id)


def _budget_event(msg: SettleUsage, outcome: Settled, threshold: int) -> BudgetAlerted:
    return BudgetAlerted(
        tenant_id=msg.tenant_id,
        request_id=msg.request_id,
        # Derived from the settle that crossed it: a retried publish is de-duplicated.
        event_id=f"budget-{msg.reservation_id}-{threshold}",
        month=month_of_reservation(msg.reservation_id) or "",
        threshold_pct=threshold,
        spent_nanousd=outcome.spent_nanousd,
        budget_nanousd=outcome.budget_nanousd,
    )


async def _audit_refusal(trail: AuditTrail, msg: AuthorizeRequest, refused: Rejected) -> None:
    await trail.record_for(
        msg,
        event_type=AuditEventType.API_CALL,
        action="metering.authorize",
        status=AuditStatus.FAILURE,
        resource_type="model",
        resource_id=msg.model,
        error=refused.error.message,
        details={
            "code": refused.error.code.value,
            "reason": refused.reason,
            "retry_after_s": refused.retry_after_s,
            "estimated_input_tokens": msg.estimated_input_tokens,
            "max_tokens": msg.max_tokens,
        },
    )


async def _audit_settle_error(trail: AuditTrail, msg: SettleUsage, error: str) -> None:
    await trail.record_for(
        msg,
        event_type=AuditEventType.ERROR,
        action="metering.settle",
        status=AuditStatus.FAILURE,
        resource_type="reservation",
        resource_id=msg.reservation_id,
        error=error,
        details={"model": msg.model, "tokens": msg.usage.total},
    )


async def _audit_budget_alert(
    trail: AuditTrail, msg: SettleUsage, outcome: Settled, threshold: int
) -> None:
    month = month_of_reservation(msg.reservation_id) or ""
    await trail.record_for(
        msg,
        event_type=AuditEventType.BUDGET_ALERT,
        action="budget.threshold_crossed",
        resource_type="budget",
        resource_id=month,
        details={
            "month": month,
            "threshold_pct": threshold,
            "spent_nanousd": outcome.spent_nanousd,
            "budget_nanousd": outcome.budget_nanousd,
        },
    )


HANDLERS = Handlers[Deps](
    SERVICE,
    rpcs=[
        Rpc("authorize", AuthorizeRequest, RequestAuthorized, authorize),
        Rpc("settle", SettleUsage, UsageSettled, settle),
        Rpc("provision", ProvisionTenant, TenantProvisioned, provision),
        Rpc("deprovision", DeprovisionTenant, TenantDeprovisioned, deprovision),
        Rpc("totals", QueryMeteringTotals, MeteringTotals, totals),
    ],
)
