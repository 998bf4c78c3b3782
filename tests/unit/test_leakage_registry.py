"""Reading tenants-bucket entries into identities."""

from __future__ import annotations

import pytest
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.leakage.directory import TenantDirectory, TenantIdentity
from services.promptconfig.tiers import DEFAULT_MODELS, TIER_LIMITS
from shared.feeds import UnreadableEntry, parse_config
from shared.messages.tenants import TenantConfig, Tier
from shared.templates import DEFAULT_TEMPLATE

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


def parse_entry(kv_entry: KeyValue.Entry) -> TenantIdentity | None:
    """What leakage's registry feed keeps for an entry (shared parse, leakage's identity)."""
    config = parse_config(kv_entry)
    return TenantIdentity.from_config(config) if config is not None else None


def config_json(tid: str, policy: dict[str, str] | None = None) -> bytes:
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
        leakage_policy=policy or {},
    )
    return config.model_dump_json().encode()


def test_a_put_becomes_an_identity() -> None:
    assert parse_entry(entry("acme", config_json("acme"))) == TenantIdentity(
        "acme", "Acme Corp", ("Acme",), ("acme.com",)
    )


def test_the_tenants_leakage_policy_comes_with_its_identity() -> None:
    parsed = parse_entry(entry("acme", config_json("acme", {"pii": "flag", "secret": "block"})))
    assert parsed is not None and dict(parsed.policy) == {"pii": "flag", "secret": "block"}
    directory = TenantDirectory([parsed])
    assert directory.policy("acme") == {"pii": "flag", "secret": "block"}
    assert directory.policy("unknown") == {}


def test_a_policy_action_outside_block_redact_flag_is_refused_at_the_registry() -> None:
    with pytest.raises(ValueError):
        config_json("acme", {"pii": "allow"})


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
