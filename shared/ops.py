"""What ops do over the bus (the CLI's back end): tenants, usage, audit. Never opens a store.

Replies come back as they are (a refusal is a reply with `.error` set); failures to get a
reply at all (NATS unreachable, credentials refused, a service not running or not
answering) raise the client's typed errors (shared.client_errors). Like the client it
needs only nats-py and pydantic, so the CLI works from a client-only install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, ValidationError

from shared import subjects
from shared.client_credentials import Credentials, resolve_credentials
from shared.client_errors import InternalError, TenantryError, Unavailable, error_from_info
from shared.client_transport import Connection
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
from shared.messages.metering import MeteringTotals, QueryMeteringTotals
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
from shared.tenant_directory import ListTenants, TenantsListed, TenantSummary, directory_subject

R = TypeVar("R", bound=BaseModel)


class OpsClient:
    def __init__(
        self,
        nats_url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        creds: str | Path | None = None,
        credentials: Credentials | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        keep_reconnecting: bool = True,
    ) -> None:
        self._url = nats_url
        # Explicit user/password (or creds) only: ops code never picks up a tenant's
        # credentials from the environment by accident.
        self._credentials = credentials or resolve_credentials(user, password, creds, environ={})
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._keep_reconnecting = keep_reconnecting
        self._conn: Connection | None = None

    async def __aenter__(self) -> OpsClient:
        self._conn = await Connection.open(
            self._url,
            self._credentials,
            name="tenantry-ops",
            connect_timeout_s=self._connect_timeout,
            keep_reconnecting=self._keep_reconnecting,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    @property
    def nc(self) -> NatsClient:
        return self._connection.nc

    @property
    def _connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("OpsClient is not connected; use `async with`")
        return self._conn

    async def call(
        self,
        service: str,
        verb: str,
        message: BaseModel,
        reply_type: type[R],
        timeout: float | None = None,
    ) -> R:
        """Request/reply to svc.<service>.<verb>.<tenant>: the typed reply (a refusal is a
        reply with `.error`), or a typed TenantryError if no usable reply came."""
        tenant_id = str(getattr(message, "tenant_id"))  # noqa: B009 (every command has one)
        data = await self._connection.request(
            subjects.service(service, verb, tenant_id),
            message.model_dump_json().encode(),
            timeout or self._timeout,
            f"the {service} service",
        )
        try:
            return reply_type.model_validate_json(data)
        except ValidationError:
            raise InternalError(f"the {service} service answered badly to {verb}") from None

    async def list_tenants(self, page_size: int = 500) -> AsyncIterator[TenantSummary]:
        """Every registered tenant, in id order, a page at a time. Raises on a refusal."""
        request = ListTenants(limit=page_size)
        while True:
            try:
                data = await self._connection.request(
                    directory_subject(),
                    request.model_dump_json().encode(),
                    self._timeout,
                    "the promptconfig service",
                )
            except Unavailable as exc:
                if "no responders" not in exc.message or not await self._answers_health(
                    "promptconfig"
                ):
                    raise
                raise Unavailable(
                    "the promptconfig service is running but cannot list tenants: it is a "
                    "version without the svc.promptconfig.list verb"
                ) from None
            try:
                page = TenantsListed.model_validate_json(data)
            except ValidationError:
                raise InternalError("the promptconfig service answered badly to list") from None
            if page.error:
                raise error_from_info(page.error)
            for tenant in page.tenants:
                yield tenant
            if not page.more or not page.tenants:
                return
            request = request.model_copy(update={"after": page.tenants[-1].tenant_id})

    async def _answers_health(self, service: str) -> bool:
        try:
            await self._connection.request(subjects.health(service), b"", 1.0, service)
        except TenantryError:
            return False
        return True

    async def save_tenant(
        self, tenant_id: str, profile: TenantProfile, actor: str = "ops"
    ) -> TenantUpserted:
        return await self.call(
            "promptconfig",
            "upsert",
            UpsertTenant(tenant_id=tenant_id, profile=profile, actor=actor),
            TenantUpserted,
        )

    async def get_tenant(self, tenant_id: str) -> TenantResolved:
        return await self.call(
            "promptconfig", "resolve", ResolveTenant(tenant_id=tenant_id), TenantResolved
        )

    async def delete_tenant(self, tenant_id: str, actor: str = "ops") -> TenantDeleted:
        return await self.call(
            "promptconfig", "delete", DeleteTenant(tenant_id=tenant_id, actor=actor), TenantDeleted
        )

    async def config_versions(self, tenant_id: str) -> ConfigVersions:
        return await self.call(
            "promptconfig", "versions", ListConfigVersions(tenant_id=tenant_id), ConfigVersions
        )

    async def config_version(self, tenant_id: str, version: int) -> ConfigVersionFound:
        return await self.call(
            "promptconfig",
            "version",
            GetConfigVersion(tenant_id=tenant_id, version=version),
            ConfigVersionFound,
        )

    async def rollback_config(
        self, tenant_id: str, version: int, actor: str = "ops"
    ) -> TenantUpserted:
        return await self.call(
            "promptconfig",
            "rollback",
            RollbackConfig(tenant_id=tenant_id, version=version, actor=actor),
            TenantUpserted,
        )

    async def preview_prompt(
        self, tenant_id: str, template: str | None = None, instructions: str | None = None
    ) -> PromptPreviewed:
        return await self.call(
            "promptconfig",
            "preview",
            PreviewPrompt(
                tenant_id=tenant_id,
                system_prompt_template=template,
                custom_instructions=instructions,
            ),
            PromptPreviewed,
        )

    async def onboard(self, msg: OnboardTenant) -> OnboardingResult:
        return await self.call("promptconfig", "onboard", msg, OnboardingResult)

    async def offboard(self, tenant_id: str, actor: str = "ops") -> DeletionReceipt:
        return await self.call(
            "promptconfig",
            "offboard",
            OffboardTenant(tenant_id=tenant_id, actor=actor),
            DeletionReceipt,
        )

    async def issue_credentials(
        self, tenant_id: str, rotate: bool = False, actor: str = "ops"
    ) -> CredentialsIssued:
        return await self.call(
            "access",
            "issue",
            IssueCredentials(tenant_id=tenant_id, rotate=rotate, actor=actor),
            CredentialsIssued,
        )

    async def revoke_credentials(self, tenant_id: str, actor: str = "ops") -> CredentialsRevoked:
        return await self.call(
            "access",
            "revoke",
            RevokeCredentials(tenant_id=tenant_id, actor=actor),
            CredentialsRevoked,
        )

    async def rotate_credentials(self, tenant_id: str, actor: str = "ops") -> CredentialsIssued:
        """New NATS credentials for the tenant; the old password stops working at once."""
        return await self.issue_credentials(tenant_id, rotate=True, actor=actor)

    async def metering_totals(self, tenant_id: str, month: str | None = None) -> MeteringTotals:
        """metering's live view of the budget period: spent, held by calls in flight, budget."""
        return await self.call(
            "metering",
            "totals",
            QueryMeteringTotals(tenant_id=tenant_id, month=month),
            MeteringTotals,
        )

    async def usage(self, tenant_id: str, month: str | None = None) -> UsageReport:
        return await self.call(
            "audit", "usage", QueryUsage(tenant_id=tenant_id, month=month), UsageReport
        )

    async def audit(
        self, tenant_id: str, event_type: AuditEventType | None = None, limit: int = 50
    ) -> AuditPage:
        return await self.call(
            "audit",
            "query",
            QueryAudit(tenant_id=tenant_id, event_type=event_type, limit=limit),
            AuditPage,
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
        return await self.call(
            "audit",
            "query",
            QueryAudit(
                tenant_id=tenant_id,
                event_type=event_type,
                since=since,
                until=until,
                limit=limit,
                of_request=of_request,
            ),
            AuditPage,
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
            page = await self.call("audit", "export", request, AuditExportPage)
            if page.error:
                raise error_from_info(page.error)
            for row in page.rows:
                yield row
            if page.done or not page.rows:
                return
            last = page.rows[-1]
            request = request.model_copy(
                update={"after_occurred_at": last.occurred_at, "after_event_id": last.event_id}
            )

    async def audit_verify(self, tenant_id: str) -> AuditVerified:
        return await self.call(
            "audit",
            "verify",
            VerifyAudit(tenant_id=tenant_id),
            AuditVerified,
            max(self._timeout, 300.0),  # walking a long chain takes a while
        )
