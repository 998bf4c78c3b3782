from __future__ import annotations

from decimal import Decimal

import pytest

from services.promptconfig.tiers import default_profile
from shared import templates
from shared.messages.tenants import TenantConfig, Tier
from shared.money import format_usd, per_mtok, usd
from shared.templates import system_prompt

pytestmark = pytest.mark.unit


def _config(**overrides: object) -> TenantConfig:
    profile = default_profile("Acme Corp", Tier.ENTERPRISE)
    data = {**profile.model_dump(), "tenant_id": "acme", "version": 1, **overrides}
    return TenantConfig.model_validate(data)


def test_default_template_renders_every_variable() -> None:
    out = system_prompt(_config(custom_instructions="Be formal."))
    assert "You are an AI assistant for Acme Corp (enterprise tier customer)." in out
    assert "Follow company guidelines: Be formal." in out
    assert "{{" not in out


@pytest.mark.parametrize(
    "template",
    ["Hello {{ unknown }}", "Hi {{tenant_name}} {{password}}", "{{constructor}}", "{{__proto__}}"],
)
def test_unknown_variables_are_refused(template: str) -> None:
    with pytest.raises(templates.TemplateError, match="unknown template variable"):
        templates.check(template)


@pytest.mark.parametrize("template", ["Hi {{tenant_name}", "Hi {tenant_name}}", "{{ }}", "}}{{"])
def test_stray_braces_are_refused(template: str) -> None:
    with pytest.raises(templates.TemplateError):
        templates.check(template)


def test_tenant_text_cannot_inject_template_syntax() -> None:
    # Values are inserted once and never re-scanned, unlike the seed's replace loop.
    out = system_prompt(
        _config(custom_instructions="{{tenant_id}} and {{tenant_name}} and $1 \\1 (.*)")
    )
    assert "{{tenant_id}} and {{tenant_name}} and $1 \\1 (.*)" in out
    evil_name = system_prompt(_config(name="{{custom_instructions}}", custom_instructions="X"))
    assert "assistant for {{custom_instructions}} (" in evil_name


def test_whitespace_inside_placeholders_is_allowed() -> None:
    assert templates.check("{{ tenant_name }}") == {"tenant_name"}


def test_money_is_exact() -> None:
    assert usd("1") == 1_000_000_000
    assert usd("0.000000001") == 1
    assert per_mtok("3") == 3_000
    assert per_mtok("0.30") == 300
    assert per_mtok("0.08") == 80
    assert format_usd(1_500_000) == "$0.001500"
    with pytest.raises(ValueError):
        usd("0.0000000001")
    with pytest.raises(ValueError):
        per_mtok("0.0001")
    assert Decimal(per_mtok("15")) * 1_000_000 / 1_000_000_000 == Decimal(15)
