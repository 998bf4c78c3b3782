"""What ops do over the bus (the CLI's back end): tenants, usage, audit. Never opens a store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType

import nats
from nats.aio.client import Client as NatsClient

from shared import subjects
from shared.bus import ServiceCallError, call
from shared.messages.access import (
    CredentialsIssued,
    CredentialsRevoked,
    IssueCredentials,
    RevokeCredentials,
)
from shared.messages.audit import (
    AuditEventType,
    AuditExportPage,
    AuditPage,
    AuditRow,
    AuditVerified,
    ExportAudit,
    QueryAudit,
    QueryUsage,
    UsageReport,
    VerifyAudit,
)
from shared.messages.lifecycle import (
    DeletionReceipt,
    OffboardTenant,
    OnboardingResult,
    OnboardTenant,
)
from shared.messages.tenants import (
    ConfigVersionFound,
    ConfigVersions,
    DeleteTenant,
    GetConfigVersion,
    ListConfigVersions,
    PreviewPrompt,
    PromptPreviewed,
    ResolveTenant,
    RollbackConfig,
    TenantDeleted,
    TenantProfile,
    TenantResolved,
    TenantUpserted,
    UpsertTenant,
)


class OpsClient:
    def __init__(
        self,
        nats_url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._url, self._user, self._password = nats_url, user, password
        self._timeout = timeout_s
        self._nc: NatsClient | None = None

    async def __aenter__(self) -> OpsClient:
        self._nc = await nats.connect(
            self._url, user=self._user, password=self._password, name="tenantry-ops"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("OpsClient is not connected; use `async with`")
        return self._nc

    async def save_tenant(
        self, tenant_id: str, profile: TenantProfile, actor: str = "ops"
    ) -> TenantUpserted:
        return await call(
            self.nc,
            subjects.service("promptconfig", "upsert", tenant_id),
            UpsertTenant(tenant_id=tenant_id, profile=profile, actor=actor),
            TenantUpserted,
            self._timeout,
        )

    async def get_tenant(self, tenant_id: str) -> TenantResolved:
        return await call(
            self.nc,
            subjects.service("promptconfig", "resolve", tenant_id),
            ResolveTenant(tenant_id=tenant_id),
            TenantResolved,
            self._timeout,
        )

    async def delete_tenant(self, tenant_id: str, actor: str = "ops") -> TenantDeleted:
        return await call(
            self.nc,
            subjects.service("promptconfig", "delete", tenant_id),
            DeleteTenant(tenant_id=tenant_id, actor=actor),
            TenantDeleted,
            self._timeout,
        )

    async def config_versions(self, tenant_id: str) -> ConfigVersions:
        return await call(
            self.nc,
            subjects.service("promptconfig", "versions", tenant_id),
            ListConfigVersions(tenant_id=tenant_id),
            ConfigVersions,
            self._timeout,
        )

    async def config_version(self, tenant_id: str, version: int) -> ConfigVersionFound:
        return await call(
            self.nc,
            subjects.service("promptconfig", "version", tenant_id),
            GetConfigVersion(tenant_id=tenant_id, version=version),
            ConfigVersionFound,
            self._timeout,
        )

    async def rollback_config(
        self, tenant_id: str, version: int, actor: str = "ops"
    ) -> TenantUpserted:
        return await call(
            self.nc,
            subjects.service("promptconfig", "rollback", tenant_id),
            RollbackConfig(tenant_id=tenant_id, version=version, actor=actor),
            TenantUpserted,
            self._timeout,
        )

    async def preview_prompt(
        self, tenant_id: str, template: str | None = None, instructions: str | None = None
    ) -> PromptPreviewed:
        return await call(
            self.nc,
            subjects.service("promptconfig", "preview", tenant_id),
            PreviewPrompt(
                tenant_id=tenant_id,
                system_prompt_template=template,
                custom_instructions=instructions,
            ),
            PromptPreviewed,
            self._timeout,
        )

    async def onboard(self, msg: OnboardTenant) -> OnboardingResult:
        return await call(
            self.nc,
            subjects.service("promptconfig", "onboard", msg.tenant_id),
            msg,
            OnboardingResult,
            self._timeout,
        )

    async def offboard(self, tenant_id: str, actor: str = "ops") -> DeletionReceipt:
        return await call(
            self.nc,
            subjects.service("promptconfig", "offboard", tenant_id),
            OffboardTenant(tenant_id=tenant_id, actor=actor),
            DeletionReceipt,
            self._timeout,
        )

    async def issue_credentials(
        self, tenant_id: str, rotate: bool = False, actor: str = "ops"
    ) -> CredentialsIssued:
        return await call(
            self.nc,
            subjects.service("access", "issue", tenant_id),
            IssueCredentials(tenant_id=tenant_id, rotate=rotate, actor=actor),
            CredentialsIssued,
            self._timeout,
        )

    async def revoke_credentials(self, tenant_id: str, actor: str = "ops") -> CredentialsRevoked:
        return await call(
            self.nc,
            subjects.service("access", "revoke", tenant_id),
            RevokeCredentials(tenant_id=tenant_id, actor=actor),
            CredentialsRevoked,
            self._timeout,
        )

    async def usage(self, tenant_id: str, month: str | None = None) -> UsageReport:
        return await call(
            self.nc,
            subjects.service("audit", "usage", tenant_id),
            QueryUsage(tenant_id=tenant_id, month=month),
            UsageReport,
            self._timeout,
        )

    async def audit(
        self, tenant_id: str, event_type: AuditEventType | None = None, limit: int = 50
    ) -> AuditPage:
        return await call(
            self.nc,
            subjects.service("audit", "query", tenant_id),
            QueryAudit(tenant_id=tenant_id, event_type=event_type, limit=limit),
            AuditPage,
            self._timeout,
        )

    async def audit_query(
        self,
        tenant_id: str,
        event_type: AuditEventType | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        of_request: str = "",
    ) -> AuditPage:
        return await call(
            self.nc,
            subjects.service("audit", "query", tenant_id),
            QueryAudit(
                tenant_id=tenant_id,
                event_type=event_type,
                since=since,
                until=until,
                limit=limit,
                of_request=of_request,
            ),
            AuditPage,
            self._timeout,
        )

    async def audit_export(
        self,
        tenant_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 2_000,
    ) -> AsyncIterator[AuditRow]:
        """Every row of the tenant's trail in [since, until), oldest first, one page in
        memory at a time (keyset pages from the audit service). Raises on an error reply."""
        request = ExportAudit(tenant_id=tenant_id, since=since, until=until, page_size=page_size)
        while True:
            page = await call(
                self.nc,
                subjects.service("audit", "export", tenant_id),
                request,
                AuditExportPage,
                self._timeout,
            )
            if page.error:
                raise ServiceCallError(page.error)
            for row in page.rows:
                yield row
            if page.done or not page.rows:
                return
            last = page.rows[-1]
            request = request.model_copy(
                update={"after_occurred_at": last.occurred_at, "after_event_id": last.event_id}
            )

    async def audit_verify(self, tenant_id: str) -> AuditVerified:
        return await call(
            self.nc,
            subjects.service("audit", "verify", tenant_id),
            VerifyAudit(tenant_id=tenant_id),
            AuditVerified,
            # Walking a long chain takes a while: allow for it.
            max(self._timeout, 300.0),
        )
