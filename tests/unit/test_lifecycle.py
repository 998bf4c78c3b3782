"""The onboarding saga with fakes: a failure at each step leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.promptconfig import lifecycle
from services.promptconfig.adapters import VersionConflict
from shared.messages.access import (
    CredentialsIssued,
    CredentialsRevoked,
    IssueCredentials,
    RevokeCredentials,
)
from shared.messages.base import Envelope, ErrorCode, ErrorInfo
from shared.messages.lifecycle import (
    DeprovisionTenant,
    OffboardTenant,
    OnboardTenant,
    ProvisionTenant,
    TenantDeprovisioned,
    TenantProvisioned,
)
from shared.messages.tenants import TenantConfig, Tier

pytestmark = pytest.mark.unit
STEPS = ["config", "retrieval", "metering", "credentials", "audit", "event"]


class MemoryStore:
    def __init__(self, fail_put: bool = False) -> None:
        self.configs: dict[str, tuple[TenantConfig, int]] = {}
        self.history: dict[str, list[TenantConfig]] = {}
        self.fail_put = fail_put

    async def get(self, tenant_id: str) -> tuple[TenantConfig, int] | None:
        return self.configs.get(tenant_id)

    async def put(self, config: TenantConfig, expected_revision: int) -> int:
        if self.fail_put:
            raise RuntimeError("kv down")
        current = self.configs.get(config.tenant_id)
        if (current[1] if current else 0) != expected_revision:
            raise VersionConflict(config.tenant_id)
        self.configs[config.tenant_id] = (config, expected_revision + 1)
        return expected_revision + 1

    async def delete(self, tenant_id: str) -> bool:
        self.history.pop(tenant_id, None)
        return self.configs.pop(tenant_id, None) is not None

    async def record_version(self, config: TenantConfig) -> None:
        self.history.setdefault(config.tenant_id, []).append(config)

    async def versions(self, tenant_id: str) -> list[TenantConfig]:
        return list(self.history.get(tenant_id, []))

    async def tenant_ids(self) -> list[str]:
        return sorted(self.configs)


@dataclass
class FakePorts:
    fail_at: str | None = None
    provisioned: set[str] = field(default_factory=set)
    credentials: set[str] = field(default_factory=set)
    events: list[Envelope] = field(default_factory=list)

    def _error(self, step: str) -> ErrorInfo | None:
        if self.fail_at == step:
            return ErrorInfo(code=ErrorCode.UNAVAILABLE, message=f"{step} is down", retryable=True)
        return None

    async def provision(self, service: str, msg: ProvisionTenant) -> TenantProvisioned:
        error = self._error(service)
        if error is None:
            self.provisioned.add(service)
        return TenantProvisioned(tenant_id=msg.tenant_id, created=True, error=error)

    async def deprovision(self, service: str, msg: DeprovisionTenant) -> TenantDeprovisioned:
        removed = int(service in self.provisioned)
        self.provisioned.discard(service)
        return TenantDeprovisioned(tenant_id=msg.tenant_id, removed=removed * 7)

    async def issue(self, msg: IssueCredentials) -> CredentialsIssued:
        error = self._error("credentials")
        if error is None:
            self.credentials.add(msg.tenant_id)
        return CredentialsIssued(
            tenant_id=msg.tenant_id,
            user=f"tenant-{msg.tenant_id}",
            password="pw" if not error else "",
            created=error is None,
            error=error,
        )

    async def revoke(self, msg: RevokeCredentials) -> CredentialsRevoked:
        existed = msg.tenant_id in self.credentials
        self.credentials.discard(msg.tenant_id)
        return CredentialsRevoked(tenant_id=msg.tenant_id, existed=existed)

    async def publish(self, event: Envelope, subject: str) -> None:
        if self.fail_at == "event":
            raise RuntimeError("stream unavailable")
        self.events.append(event)


@dataclass
class FakeTrail:
    fail_action: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    async def record(self, **kwargs: Any) -> None:
        if self.fail_action and kwargs.get("action") == self.fail_action and "status" not in kwargs:
            raise RuntimeError("audit stream unavailable")
        self.rows.append(kwargs)


def _msg(tid: str = "acme") -> OnboardTenant:
    return OnboardTenant(
        tenant_id=tid, name="Acme Corp", tier=Tier.PRO, admin_email="ops@acme.example"
    )


async def test_onboarding_runs_every_step_and_is_idempotent() -> None:
    store, ports, trail = MemoryStore(), FakePorts(), FakeTrail()
    result = await lifecycle.onboard(store, ports, trail, _msg())  # type: ignore[arg-type]
    assert result.ok and result.created and result.password == "pw"
    assert result.steps == STEPS
    assert ports.provisioned == {"retrieval", "metering"} and ports.credentials == {"acme"}
    assert [type(e).__name__ for e in ports.events] == ["TenantOnboarded"]
    again = await lifecycle.onboard(store, ports, trail, _msg())  # type: ignore[arg-type]
    assert again.ok and not again.created and again.password == "" and again.steps == []
    assert len(ports.events) == 1 and len(store.history["acme"]) == 1  # nothing new


async def test_same_id_for_a_different_tenant_is_a_conflict() -> None:
    store, ports, trail = MemoryStore(), FakePorts(), FakeTrail()
    await lifecycle.onboard(store, ports, trail, _msg())  # type: ignore[arg-type]
    other = OnboardTenant(tenant_id="acme", name="Other Inc", tier=Tier.FREE)
    result = await lifecycle.onboard(store, ports, trail, other)  # type: ignore[arg-type]
    assert result.error and result.error.code is ErrorCode.CONFLICT


@pytest.mark.parametrize("step", STEPS)
async def test_a_failure_at_any_step_undoes_everything(step: str) -> None:
    store = MemoryStore(fail_put=step == "config")
    ports = FakePorts(fail_at=step)
    trail = FakeTrail(fail_action="lifecycle.onboard" if step == "audit" else None)
    result = await lifecycle.onboard(store, ports, trail, _msg())  # type: ignore[arg-type]
    assert result.error is not None
    assert f"failed at step {step}" in result.error.message
    assert "every completed step was undone" in result.error.message
    assert result.password == ""
    # Nothing of the tenant remains anywhere.
    assert store.configs == {} and store.history == {}
    assert ports.provisioned == set() and ports.credentials == set()
    assert ports.events == []
    failure = [r for r in trail.rows if r.get("status") is not None]
    assert failure and f"failed at {step}" in failure[-1]["error"]


async def test_offboarding_removes_everything_and_returns_a_receipt() -> None:
    store, ports, trail = MemoryStore(), FakePorts(), FakeTrail()
    await lifecycle.onboard(store, ports, trail, _msg())  # type: ignore[arg-type]
    receipt = await lifecycle.offboard(store, ports, trail, OffboardTenant(tenant_id="acme"))  # type: ignore[arg-type]
    assert receipt.ok and receipt.existed
    assert receipt.removed == {
        "credentials": 1,
        "api_keys": 0,
        "chunks": 7,
        "metering_entries": 7,
        "finetune_items": 0,  # nothing provisioned there at onboarding, nothing made since
        "config_versions": 1,
    }
    assert store.configs == {} and ports.provisioned == set() and ports.credentials == set()
    again = await lifecycle.offboard(store, ports, trail, OffboardTenant(tenant_id="acme"))  # type: ignore[arg-type]
    assert again.ok and not again.existed and again.removed["credentials"] == 0
