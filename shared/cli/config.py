"""`tenantry tenants set|versions|diff|rollback|preview`: live, versioned configuration."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shared.cli.common import (
    ActorOpt,
    JsonOpt,
    TenantOpt,
    add_row,
    check,
    console,
    fail,
    ops_client,
    print_json,
    run,
    valid_tenant,
)
from shared.cli.tenants import tenants
from shared.messages.tenants import TenantConfig, TenantLimits, TenantProfile, Tier
from shared.money import usd

TemplateFile = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="System prompt template file."),
]


@tenants.command("set")
def tenants_set(
    tenant: TenantOpt,
    actor: ActorOpt = "ops",
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    tier: Annotated[Tier | None, typer.Option(help="Commercial tier.")] = None,
    template_file: TemplateFile = None,
    instructions: Annotated[str | None, typer.Option(help="Custom instructions.")] = None,
    models: Annotated[str | None, typer.Option(help="Allowed models, comma-separated.")] = None,
    default_model: Annotated[
        str | None, typer.Option(help="Model used when a request names none.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max output tokens a request.")] = None,
    budget_usd: Annotated[str | None, typer.Option(help="Monthly budget in USD.")] = None,
) -> None:
    """Change a tenant's configuration; it applies to the next request, no restart."""
    tenant = valid_tenant(tenant)
    template = template_file.read_text() if template_file else None
    try:
        budget = usd(budget_usd) if budget_usd else None
    except (ArithmeticError, ValueError):
        fail(f"--budget-usd: not an amount in USD: {str(budget_usd)[:40]!r}")

    async def go() -> None:
        async with ops_client() as ops:
            found = check(await ops.get_tenant(tenant))
            if found.config is None:
                fail(f"tenant {tenant} not found")
            current = found.config
            limits: dict[str, Any] = current.limits.model_dump()
            limit_changes: tuple[tuple[str, int | None], ...] = (
                ("requests_per_minute", rpm),
                ("tokens_per_minute", tpm),
                ("max_tokens_per_request", max_tokens),
                ("monthly_budget_nanousd", budget),
            )
            for key, number in limit_changes:
                if number is not None:
                    limits[key] = number
            changes: dict[str, Any] = {"limits": TenantLimits(**limits)}
            allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
            other_changes: tuple[tuple[str, object], ...] = (
                ("name", name),
                ("tier", tier),
                ("system_prompt_template", template),
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
            saved = check(await ops.save_tenant(tenant, profile, actor=actor))
        if saved.config is None:
            fail("promptconfig saved nothing")
        console.print(f"{tenant}: configuration version {saved.config.version}", markup=False)

    run(go())


@tenants.command("versions")
def tenants_versions(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List every saved configuration version."""
    tenant = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            listed = check(await ops.config_versions(tenant))
        if as_json:
            print_json([v.model_dump(mode="json") for v in listed.versions])
            return
        table = Table(title=f"{tenant} configuration versions")
        for col in ("version", "saved at", "by", "changed"):
            table.add_column(col, overflow="fold")
        for v in listed.versions:
            add_row(
                table,
                str(v.version),
                v.updated_at.isoformat(timespec="seconds"),
                v.updated_by,
                ", ".join(v.changed),
            )
        console.print(table)

    run(go())


@tenants.command("diff")
def tenants_diff(
    tenant: TenantOpt,
    old: Annotated[int, typer.Option("--from", help="Older version.")],
    new: Annotated[int, typer.Option("--to", help="Newer version.")],
    as_json: JsonOpt = False,
) -> None:
    """Show what changed between two versions."""
    tenant = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            a = check(await ops.config_version(tenant, old)).config
            b = check(await ops.config_version(tenant, new)).config
        if a is None or b is None:
            fail(f"version {old if a is None else new} of {tenant} not found")
        lines = diff_configs(a, b)
        if as_json:
            print_json({"from": a.version, "to": b.version, "diff": lines})
            return
        console.print("\n".join(lines) or "no differences", markup=False)

    run(go())


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
    actor: ActorOpt = "ops",
) -> None:
    """Restore an earlier version's settings (saved as a new version)."""
    tenant = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            saved = check(await ops.rollback_config(tenant, version, actor))
        if saved.config is None:
            fail("promptconfig saved nothing")
        console.print(
            f"{tenant}: restored version {version} as version {saved.config.version}",
            markup=False,
        )

    run(go())


@tenants.command("preview")
def tenants_preview(
    tenant: TenantOpt,
    template_file: TemplateFile = None,
    instructions: Annotated[str | None, typer.Option(help="Proposed custom instructions.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the rendered system prompt, optionally with a proposed template or instructions."""
    tenant = valid_tenant(tenant)
    template = template_file.read_text() if template_file else None

    async def go() -> None:
        async with ops_client() as ops:
            shown = check(await ops.preview_prompt(tenant, template, instructions))
        if as_json:
            print_json({"system_prompt": shown.system_prompt})
            return
        console.print(shown.system_prompt, markup=False)

    run(go())
