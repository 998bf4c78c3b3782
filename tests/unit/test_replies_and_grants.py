"""The reply-subject rule and the per-service bus grants, as plain functions."""

from __future__ import annotations

import pytest

from shared import subjects
from shared.grants import GRANTS, grant_for, publish_permissions, subscribe_permissions
from shared.launcher import SERVICES
from shared.replies import reply_allowed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "reply",
    ["_TINBOX.acme.Ab12.Cd34", "_TINBOX.acme.x", "_TINBOX.acme.a-b_c.9"],
)
def test_a_tenant_is_answered_in_its_own_inbox(reply: str) -> None:
    assert reply_allowed(reply, "acme")


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "_TINBOX.acme",  # the prefix alone is no inbox
        "_TINBOX.acme.",
        "_TINBOX.acme-2.x",  # another tenant whose id starts the same
        "_TINBOX.acm.x",
        "_TINBOX.globex.x",
        "tenant.globex.completion.r1",
        "tenant.acme.completion.r1",  # even its own completions: the gateway writes those
        "evt.acme.audit",
        "$JS.API.STREAM.DELETE.TENANTRY_EVENTS",
        "$JS.ACK.TENANTRY_REQUESTS.gateway.1.2.3.4.5",
        "_INBOX.gateway.x",
        "_TINBOX.acme.*",
        "_TINBOX.acme.>",
        "_TINBOX.acme..x",
        "_TINBOX.acme.x ",
        "_TINBOX.acme.x\r\nPUB evil 1",
        "_TINBOX.acme." + "x" * 300,
    ],
)
def test_anything_else_is_refused_for_a_tenant(reply: str) -> None:
    assert not reply_allowed(reply, "acme")


def test_platform_subjects_are_answered_only_on_platform_inboxes() -> None:
    assert reply_allowed("_INBOX.gateway.abc.def", None)
    assert reply_allowed("_INBOX.Xyz123", None)
    for reply in ("_TINBOX.acme.x", "tenant.acme.completion.r", "_INBOX", "_INBOX.", "svc.llm.x"):
        assert not reply_allowed(reply, None), reply


def test_a_token_that_is_not_one_token_has_no_inbox() -> None:
    for token in ("", "a.b", "*", ">"):
        assert not reply_allowed("_TINBOX.a.b.c", token)


def test_every_service_the_launcher_starts_has_a_grant() -> None:
    assert set(SERVICES) <= set(GRANTS)
    with pytest.raises(KeyError, match="no entry"):
        grant_for("no-such-service")


def test_no_service_may_publish_or_subscribe_everywhere() -> None:
    for name in GRANTS:
        pubs, subs = publish_permissions(name), subscribe_permissions(name)
        for wide in (">", "*.>", "$JS.API.>", "$JS.>", "$KV.>", "tenant.>", "evt.>", "svc.>"):
            assert wide not in pubs and wide not in subs, (name, wide)
        # Its own inbox only, never the shared one.
        assert "_INBOX.>" not in subs and f"_INBOX.{name}.>" in subs, name
        # No stream or bucket can be deleted by a service.
        assert not [p for p in pubs if ".STREAM.DELETE." in p], name


def test_only_the_gateway_writes_to_tenants() -> None:
    for name in GRANTS:
        pubs = publish_permissions(name)
        tenant_facing = [
            p for p in pubs if p.startswith((subjects.TENANT_INBOX_ROOT, "tenant.", "intake."))
        ]
        if name == "api":  # the HTTP door asks as the tenant its key belongs to
            assert tenant_facing == [
                subjects.ALL_SYNC_REQUESTS,
                subjects.ALL_STREAM_REQUESTS,
                subjects.ALL_CANCELS,
            ]
        elif name == "gateway":
            assert set(tenant_facing) == {
                "_TINBOX.>",
                subjects.ALL_COMPLETIONS,
                subjects.ALL_QUEUED_REQUESTS,
            }
        else:
            assert tenant_facing == [], name


def test_jetstream_rights_name_only_the_services_own_streams() -> None:
    llm = publish_permissions("llm")
    assert f"$JS.API.STREAM.INFO.{subjects.EVENTS_STREAM}" in llm
    assert not any(subjects.REQUESTS_STREAM in p for p in llm)
    assert not any("KV_tenantry-metering" in p or "$KV.tenantry-metering" in p for p in llm)
    metering = publish_permissions("metering")
    assert "$KV.tenantry-metering.>" in metering
    assert not any("$KV.tenantry-credentials" in p for p in metering)
    # Reading a bucket is not writing it.
    gateway = publish_permissions("gateway")
    assert not any(p.startswith("$KV.tenantry-tenants") for p in gateway)
    assert "$JS.API.DIRECT.GET.KV_tenantry-tenants.>" in gateway
