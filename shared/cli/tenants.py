"""`tenantry tenants …`: register and inspect tenants."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from typing import Annotated

import typer

from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.messages.tenants import Tier

tenants = typer.Typer(help="Create, show and delete tenants.", no_args_is_help=True)


@tenants.command("create")
def tenants_create(
    name: Annotated[str, typer.Option(help="Display name, e.g. 'Acme Corp'.")],
    tier: Annotated[Tier, typer.Option(help="free, pro or enterprise.")] = Tier.FREE,
    admin_email: Annotated[str | None, typer.Option(help="Tenant admin's email.")] = None,
    tenant_id: Annotated[
        str | None, typer.Option("--id", help="Tenant id; default from name.")
    ] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Register a tenant with its tier's default limits and the default prompt template."""
    from services.promptconfig.tiers import default_profile
    from shared.tenancy import InvalidTenantId, validate_tenant_id

    tid = tenant_id or _slug(name)
    try:
        validate_tenant_id(tid)
    except InvalidTenantId as exc:
        fail(str(exc))

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            saved = await ops.save_tenant(
                tid, default_profile(name, tier, admin_email), actor="cli"
            )
        if saved.error:
            fail(saved.error.message)
        verb = "created" if saved.created else "unchanged (already exists)"
        assert saved.config is not None
        console.print(f"tenant [bold]{tid}[/bold] {verb}, config version {saved.config.version}")

    asyncio.run(go())


@tenants.command("show")
def tenants_show(tenant: TenantOpt, nats_url: NatsUrl = DEFAULT_URL) -> None:
    """Show a tenant's configuration and rendered system prompt."""

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            found = await ops.get_tenant(tenant)
        if found.error or found.config is None:
            fail(found.error.message if found.error else "not found")
        assert found.config is not None
        console.print_json(found.config.model_dump_json())
        console.print("[bold]system prompt:[/bold]\n" + found.system_prompt)

    asyncio.run(go())


def _slug(name: str) -> str:
    """A default tenant id from a display name: ASCII-folded, lower-case, hyphenated."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:48].strip("-")
