"""A strict system-prompt renderer with a closed set of variables.

Shared because two services render: promptconfig checks templates when they are saved
and renders its answers and previews, and the gateway renders each config once into its
cache.

Unlike the seed's `new RegExp(placeholder)` loop, rendering is one pass over a template
that was fully checked when it was saved: unknown variables and stray braces are
refused, and substituted values are never re-scanned, so tenant-supplied text (custom
instructions, names) cannot inject template syntax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.messages.tenants import TenantConfig

VARIABLES = frozenset({"tenant_name", "tenant_tier", "custom_instructions", "tenant_id"})
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

DEFAULT_TEMPLATE = """You are an AI assistant for {{tenant_name}} ({{tenant_tier}} tier customer).
Core instructions:
- Provide helpful, accurate responses
- Answer only from the context passages provided; say so when they do not contain the answer
- Follow company guidelines: {{custom_instructions}}
- Never reference other customers or their data
- Be transparent about your limitations
Remember: You are serving {{tenant_name}} exclusively in this conversation."""


class TemplateError(ValueError):
    pass


def check(template: str) -> frozenset[str]:
    """Return the variables a template uses; raise TemplateError if it is not well-formed."""
    used = set()
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name not in VARIABLES:
            allowed = ", ".join(sorted(VARIABLES))
            raise TemplateError(f"unknown template variable {name!r}; allowed: {allowed}")
        used.add(name)
    leftover = _PLACEHOLDER.sub("", template)
    if "{{" in leftover or "}}" in leftover:
        raise TemplateError(
            "stray '{{' or '}}' in template: placeholders look like {{tenant_name}}"
        )
    return frozenset(used)


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute each placeholder once. Values are inserted verbatim, never re-parsed."""
    check(template)
    missing = VARIABLES - values.keys()
    if missing:
        raise TemplateError(f"missing values for {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def system_prompt(config: TenantConfig) -> str:
    """The tenant's system prompt, rendered from its config."""
    return render(
        config.system_prompt_template,
        {
            "tenant_name": config.name,
            "tenant_tier": config.tier.value,
            "custom_instructions": config.custom_instructions,
            "tenant_id": config.tenant_id,
        },
    )
