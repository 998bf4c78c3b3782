"""Live, versioned tenant configuration: changes apply at once, every version is kept,
versions can be listed, diffed and rolled back, and each change is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest_asyncio
from faststream.nats import NatsBroker

from services.promptconfig.app import make_service
from services.promptconfig.settings import PromptConfigSettings
from services.promptconfig.tiers import default_profile
from shared import subjects
from shared.cli.config import diff_configs
from shared.messages.audit import AuditEventType, AuditRecorded
from shared.messages.base import ErrorCode
from shared.messages.tenants import Tier
from shared.ops import OpsClient
from shared.service import Service


@pytest_asyncio.fixture(scope="module")
async def promptconfig(nats_url: str) -> AsyncIterator[Service]:
    service = make_service(PromptConfigSettings(nats_url=nats_url))
    await service.start()
    yield service
    await service.stop()


async def test_change_applies_live_and_rollback_restores(
    promptconfig: Service,
    nats_url: str,
    client_broker: NatsBroker,
    new_tenant_id: Callable[[str], str],
) -> None:
    tid = new_tenant_id("cfg")
    base = default_profile("Initech", Tier.PRO, custom_instructions="Be formal.")
    async with OpsClient(nats_url) as ops:
        v1 = await ops.save_tenant(tid, base, actor="alice")
        assert v1.ok and v1.config and v1.config.version == 1
        before = await ops.get_tenant(tid)
        assert "Follow company guidelines: Be formal." in before.system_prompt

        changed = base.model_copy(
            update={"custom_instructions": "Be playful.", "tier": Tier.ENTERPRISE}
        )
        v2 = await ops.save_tenant(tid, changed, actor="bob")
        assert v2.ok and v2.config and v2.config.version == 2
        # The very next look-up (what the gateway does per request) sees the change.
        after = await ops.get_tenant(tid)
        assert "Be playful." in after.system_prompt and "enterprise tier" in after.system_prompt

        listed = await ops.config_versions(tid)
        assert [v.version for v in listed.versions] == [1, 2]
        assert listed.versions[1].updated_by == "bob"
        assert set(listed.versions[1].changed) == {"custom_instructions", "tier"}

        one, two = await ops.config_version(tid, 1), await ops.config_version(tid, 2)
        assert one.config and two.config
        diff = "\n".join(diff_configs(one.config, two.config))
        assert (
            "-custom_instructions: Be formal." in diff
            and "+custom_instructions: Be playful." in diff
        )

        rolled = await ops.rollback_config(tid, 1, actor="carol")
        assert rolled.ok and rolled.config and rolled.config.version == 3
        restored = await ops.get_tenant(tid)
        assert restored.system_prompt == before.system_prompt
        assert [v.version for v in (await ops.config_versions(tid)).versions] == [1, 2, 3]

        missing = await ops.rollback_config(tid, 99)
        assert missing.error and missing.error.code is ErrorCode.NOT_FOUND

    # Each new version is a configuration_change audit event naming who changed what.
    js = client_broker.connection.jetstream()
    last = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.audit_event(tid))
    event = AuditRecorded.model_validate_json(last.data or b"")
    assert event.event_type is AuditEventType.CONFIGURATION_CHANGE
    assert event.actor == "carol" and event.action == "config.rollback_to_v1"
    assert event.details["version"] == 3 and event.details["previous_version"] == 2


async def test_preview_and_bad_templates(
    promptconfig: Service, nats_url: str, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("prev")
    async with OpsClient(nats_url) as ops:
        await ops.save_tenant(tid, default_profile("Hooli", Tier.FREE))
        shown = await ops.preview_prompt(
            tid,
            template="Hi {{tenant_name}}: {{custom_instructions}}",
            instructions="{{tenant_id}}",
        )
        assert shown.ok and shown.system_prompt == "Hi Hooli: {{tenant_id}}"
        bad = await ops.preview_prompt(tid, template="Hi {{other_tenant_data}}")
        assert bad.error and bad.error.code is ErrorCode.TEMPLATE_INVALID
        # Refused on save too, and no version is created.
        refused = await ops.save_tenant(
            tid,
            default_profile("Hooli", Tier.FREE).model_copy(
                update={"system_prompt_template": "{{x}}"}
            ),
        )
        assert refused.error and refused.error.code is ErrorCode.TEMPLATE_INVALID
        assert [v.version for v in (await ops.config_versions(tid)).versions] == [1]


async def test_delete_removes_every_version(
    promptconfig: Service, nats_url: str, new_tenant_id: Callable[[str], str]
) -> None:
    tid = new_tenant_id("del")
    async with OpsClient(nats_url) as ops:
        await ops.save_tenant(tid, default_profile("Vandelay", Tier.FREE))
        await ops.save_tenant(tid, default_profile("Vandelay Industries", Tier.FREE))
        deleted = await ops.delete_tenant(tid)
        assert deleted.ok and deleted.existed
        assert (await ops.config_versions(tid)).versions == []
        gone = await ops.get_tenant(tid)
        assert gone.error and gone.error.code is ErrorCode.UNKNOWN_TENANT
