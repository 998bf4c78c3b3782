"""finetune's view of the services it calls: promptconfig, leakage, metering."""

from __future__ import annotations

from typing import Protocol

from faststream.nats import NatsBroker

from shared import subjects
from shared.bus import call
from shared.messages.completions import Usage
from shared.messages.leakage import ScanLocation, ScanText, TextScanned
from shared.messages.metering import (
    AuthorizeRequest,
    RequestAuthorized,
    SettleUsage,
    UsageSettled,
)
from shared.messages.tenants import (
    ResolveTenant,
    TenantLimits,
    TenantProfile,
    TenantResolved,
    TenantUpserted,
    UpsertTenant,
)


class Ports(Protocol):
    async def resolve(self, tenant_id: str, request_id: str) -> TenantResolved: ...
    async def scan(self, tenant_id: str, request_id: str, text: str) -> TextScanned: ...
    async def authorize(
        self, tenant_id: str, request_id: str, model: str, tokens: int, limits: TenantLimits
    ) -> RequestAuthorized: ...
    async def settle(
        self, tenant_id: str, request_id: str, reservation_id: str, model: str, tokens: int
    ) -> UsageSettled: ...
    async def save_profile(
        self, tenant_id: str, request_id: str, profile: TenantProfile, actor: str
    ) -> TenantUpserted: ...


class BusPorts:
    def __init__(self, broker: NatsBroker, timeout_s: float) -> None:
        self._broker = broker
        self._timeout = timeout_s

    async def resolve(self, tenant_id: str, request_id: str) -> TenantResolved:
        return await call(
            self._broker,
            subjects.service("promptconfig", "resolve", tenant_id),
            ResolveTenant(tenant_id=tenant_id, request_id=request_id),
            TenantResolved,
            self._timeout,
        )

    async def scan(self, tenant_id: str, request_id: str, text: str) -> TextScanned:
        return await call(
            self._broker,
            subjects.service("leakage", "scan", tenant_id),
            ScanText(
                tenant_id=tenant_id,
                request_id=request_id,
                location=ScanLocation.PROMPT,
                text=text,
            ),
            TextScanned,
            # A whole training file is scanned in one call: allow it more time.
            self._timeout * 3,
        )

    async def authorize(
        self, tenant_id: str, request_id: str, model: str, tokens: int, limits: TenantLimits
    ) -> RequestAuthorized:
        return await call(
            self._broker,
            subjects.service("metering", "authorize", tenant_id),
            AuthorizeRequest(
                tenant_id=tenant_id,
                request_id=request_id,
                model=model,
                estimated_input_tokens=tokens,
                max_tokens=1,  # training has no output tokens; the field needs one
                limits=limits,
            ),
            RequestAuthorized,
            self._timeout,
        )

    async def settle(
        self, tenant_id: str, request_id: str, reservation_id: str, model: str, tokens: int
    ) -> UsageSettled:
        return await call(
            self._broker,
            subjects.service("metering", "settle", tenant_id),
            SettleUsage(
                tenant_id=tenant_id,
                request_id=request_id,
                reservation_id=reservation_id,
                model=model,
                usage=Usage(input_tokens=tokens),
            ),
            UsageSettled,
            self._timeout,
        )

    async def save_profile(
        self, tenant_id: str, request_id: str, profile: TenantProfile, actor: str
    ) -> TenantUpserted:
        return await call(
            self._broker,
            subjects.service("promptconfig", "upsert", tenant_id),
            UpsertTenant(tenant_id=tenant_id, request_id=request_id, profile=profile, actor=actor),
            TenantUpserted,
            self._timeout,
        )


async def allow_model(
    ports: Ports, tenant_id: str, model_id: str, request_id: str, allow: bool = True
) -> bool:
    """Add the tenant's new model to its allow-list (or take a deleted one off it, and off
    default), as a new version of its config. Returns whether the config changed.

    The model is usable only through the tenant's own config: that is what makes it
    "settable as the default model" with the ordinary config commands."""
    resolved = await ports.resolve(tenant_id, request_id)
    if resolved.config is None:
        return False
    config = resolved.config
    models = list(config.allowed_models)
    if allow and model_id not in models:
        models.append(model_id)
    elif not allow and model_id in models and len(models) > 1:
        models.remove(model_id)
    else:
        return False
    default = config.default_model if config.default_model in models else models[0]
    profile = TenantProfile.model_validate(
        {
            **config.model_dump(include=set(TenantProfile.model_fields)),
            "allowed_models": models,
            "default_model": default,
        }
    )
    saved = await ports.save_profile(tenant_id, request_id, profile, "finetune")
    return saved.ok
