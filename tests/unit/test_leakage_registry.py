"""Reading tenants-bucket entries into identities."""

from __future__ import annotations

import pytest
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.leakage.adapters import UnreadableEntry, parse_entry
from services.leakage.directory import TenantIdentity
from services.promptconfig.templates import DEFAULT_TEMPLATE
from services.promptconfig.tiers import DEFAULT_MODELS, TIER_LIMITS
from shared.messages.tenants import TenantConfig, Tier

pytestmark = pytest.mark.unit


def entry(key: str, value: bytes | None, operation: str | None = None) -> KeyValue.Entry:
    return KeyValue.Entry(
        bucket="tenantry-tenants",
        key=key,
        value=value,
        revision=1,
        delta=0,
        created=None,
        operation=operation,
    )


def config_json(tid: str) -> bytes:
    config = TenantConfig(
        tenant_id=tid,
        version=1,
        name="Acme Corp",
        tier=Tier.PRO,
        aliases=["Acme"],
        domains=["acme.com"],
        system_prompt_template=DEFAULT_TEMPLATE,
        allowed_models=DEFAULT_MODELS,
        default_model=DEFAULT_MODELS[0],
        limits=TIER_LIMITS[Tier.PRO],
    )
    return config.model_dump_json().encode()


def test_a_put_becomes_an_identity() -> None:
    assert parse_entry(entry("acme", config_json("acme"))) == TenantIdentity(
        "acme", "Acme Corp", ("Acme",), ("acme.com",)
    )


@pytest.mark.parametrize("operation", [KV_DEL, KV_PURGE])
def test_deletes_and_purges_remove_the_tenant(operation: str) -> None:
    assert parse_entry(entry("acme", b"", operation)) is None


@pytest.mark.parametrize("value", [b"{not json", b'{"tenant_id": "acme"}'])
def test_unreadable_values_are_reported(value: bytes) -> None:
    with pytest.raises(UnreadableEntry):
        parse_entry(entry("acme", value))


def test_a_value_filed_under_another_key_is_refused() -> None:
    with pytest.raises(UnreadableEntry):
        parse_entry(entry("other", config_json("acme")))
