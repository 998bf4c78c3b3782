"""`tenantry tenants set|versions|diff|rollback|preview`: live, versioned configuration."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.cli.tenants import tenants
from shared.messages.tenants import TenantConfig, TenantLimits, TenantProfile, Tier
from shared.money import usd

Actor = Annotated[str, typer.Option(help="Who is making the change (recorded in audit).")]


@tenants.command("set")
def tenants_set(
    tenant: TenantOpt,
    actor: Actor = "ops",
    name: Annotated[str | None, typer.Option()] = None,
    tier: Annotated[Tier | None, typer.Option()] = None,
    template_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    instructions: Annotated[str | None, typer.Option(help="Custom instructions.")] = None,
    models: Annotated[str | None, typer.Option(help="Allowed models, comma-separated.")] = None,
    default_model: Annotated[str | None, typer.Option()] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max output tokens a request.")] = None,
    budget_usd: Annotated[str | None, typer.Option(help="Monthly budget in USD.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Change a tenant's configuration; it applies to the next request, no restart."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            found = await ops.get_tenant(tenant)
            if found.error or found.config is None:
                fail(found.error.message if found.error else "unknown tenant")
            current = found.config
            limits: dict[str, Any] = current.limits.model_dump()
            limit_changes: tuple[tuple[str, int | None], ...] = (
                ("requests_per_minute", rpm),
                ("tokens_per_minute", tpm),
                ("max_tokens_per_request", max_tokens),
                ("monthly_budget_nanousd", usd(budget_usd) if budget_usd else None),
            )
            for key, number in limit_changes:
                if number is not None:
                    limits[key] = number
            changes: dict[str, Any] = {"limits": TenantLimits(**limits)}
            allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
            other_changes: tuple[tuple[str, object], ...] = (
                ("name", name),
                ("tier", tier),
                ("system_prompt_template", template_file.read_text() if template_file else None),
                ("custom_instructions", instructions),
                ("allowed_models", allowed),
                ("default_model", default_model),
            )
            for key, value in other_changes:
                if value is not None:
                    changes[key] = value
            if allowed and default_model is None and current.default_model not in allowed:
                changes["default_model"] = allowed[0]
            profile = TenantProfile.model_validate(
                {**current.model_dump(include=set(TenantProfile.model_fields)), **changes}
            )
            saved = await ops.save_tenant(tenant, profile, actor=actor)
        if saved.error or saved.config is None:
            fail(saved.error.message if saved.error else "not saved")
        console.print(f"{tenant}: configuration version {saved.config.version}")

    asyncio.run(go())


@tenants.command("versions")
def tenants_versions(tenant: TenantOpt, nats_url: NatsUrl = DEFAULT_URL) -> None:
    """List every saved configuration version."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            listed = await ops.config_versions(tenant)
        if listed.error:
            fail(listed.error.message)
        table = Table(title=f"{tenant} configuration versions")
        for col in ("version", "saved at", "by", "changed"):
            table.add_column(col, overflow="fold")
        for v in listed.versions:
            table.add_row(
                str(v.version),
                v.updated_at.isoformat(timespec="seconds"),
                v.updated_by,
                ", ".join(v.changed),
            )
        console.print(table)

    asyncio.run(go())


@tenants.command("diff")
def tenants_diff(
    tenant: TenantOpt,
    old: Annotated[int, typer.Option("--from", help="Older version.")],
    new: Annotated[int, typer.Option("--to", help="Newer version.")],
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show what changed between two versions."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            a = await ops.config_version(tenant, old)
            b = await ops.config_version(tenant, new)
        for got in (a, b):
            if got.error or got.config is None:
                fail(got.error.message if got.error else "not found")
        assert a.config is not None and b.config is not None
        console.print("\n".join(diff_configs(a.config, b.config)) or "no differences")

    asyncio.run(go())


def diff_configs(a: TenantConfig, b: TenantConfig) -> list[str]:
    """A unified diff of the settings, one `field: value` line each (templates line by line)."""
    return list(
        difflib.unified_diff(
            _lines(a), _lines(b), f"version {a.version}", f"version {b.version}", lineterm=""
        )
    )


def _lines(config: TenantConfig) -> list[str]:
    lines = []
    for field, value in config.model_dump(
        mode="json", include=set(TenantProfile.model_fields)
    ).items():
        if field == "system_prompt_template":
            lines += [f"system_prompt_template| {line}" for line in str(value).splitlines()]
        else:
            lines.append(f"{field}: {value}")
    return lines


@tenants.command("rollback")
def tenants_rollback(
    tenant: TenantOpt,
    version: Annotated[int, typer.Option("--to", help="Version to restore.")],
    actor: Actor = "ops",
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Restore an earlier version's settings (saved as a new version)."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            saved = await ops.rollback_config(tenant, version, actor)
        if saved.error or saved.config is None:
            fail(saved.error.message if saved.error else "not saved")
        console.print(f"{tenant}: restored version {version} as version {saved.config.version}")

    asyncio.run(go())


@tenants.command("preview")
def tenants_preview(
    tenant: TenantOpt,
    template_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    instructions: Annotated[str | None, typer.Option()] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show the rendered system prompt, optionally with a proposed template or instructions."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            shown = await ops.preview_prompt(
                tenant, template_file.read_text() if template_file else None, instructions
            )
        if shown.error:
            fail(shown.error.message)
        console.print(shown.system_prompt, markup=False, highlight=False)

    asyncio.run(go())
