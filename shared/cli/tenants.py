"""`tenantry tenants …`: register and inspect tenants."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from typing import Annotated

import typer

from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, ops_client
from shared.messages.lifecycle import OnboardTenant
from shared.messages.tenants import Tier
from shared.tenancy import InvalidTenantId, validate_tenant_id

tenants = typer.Typer(help="Create, show and delete tenants.", no_args_is_help=True)


@tenants.command("create")
def tenants_create(
    name: Annotated[str, typer.Option(help="Display name, e.g. 'Acme Corp'.")],
    tier: Annotated[Tier, typer.Option(help="free, pro or enterprise.")] = Tier.FREE,
    admin_email: Annotated[str | None, typer.Option(help="Tenant admin's email.")] = None,
    tenant_id: Annotated[
        str | None, typer.Option("--id", help="Tenant id; default from name.")
    ] = None,
    actor: Annotated[str, typer.Option(help="Who is onboarding (audited).")] = "cli",
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Onboard a tenant: config, collection, metering state and NATS credentials.

    The credentials are printed once, here, and never again.
    """
    tid = tenant_id or _slug(name)
    try:
        validate_tenant_id(tid)
    except InvalidTenantId as exc:
        fail(str(exc))

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            done = await ops.onboard(
                OnboardTenant(
                    tenant_id=tid, name=name, tier=tier, admin_email=admin_email, actor=actor
                )
            )
        if done.error:
            fail(done.error.message)
        if not done.created:
            console.print(f"tenant [bold]{tid}[/bold] already onboarded; nothing changed")
            return
        console.print(f"tenant [bold]{tid}[/bold] onboarded ({', '.join(done.steps)})")
        console.print("NATS credentials for the tenant's client services (shown once):")
        console.print(f"  user:         {done.user}", markup=False)
        console.print(f"  password:     {done.password}", markup=False, highlight=False)
        console.print(f"  inbox prefix: {done.inbox_prefix}", markup=False)

    asyncio.run(go())


@tenants.command("delete")
def tenants_delete(
    tenant: TenantOpt,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    actor: Annotated[str, typer.Option(help="Who is offboarding (audited).")] = "cli",
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Offboard a tenant: revoke its credentials and delete its data everywhere.

    Audit rows stay until their retention ends: the record of the deletion is kept.
    """
    if not yes:
        typer.confirm(f"Delete tenant {tenant} and all of its data?", abort=True)

    async def go() -> None:
        async with ops_client(nats_url) as ops:
            receipt = await ops.offboard(tenant, actor)
        for store, count in receipt.removed.items():
            console.print(f"  removed {count:>6} {store}")
        if receipt.error:
            fail(receipt.error.message)
        state = "deleted" if receipt.existed else "was not registered; leftovers removed"
        console.print(f"tenant [bold]{tenant}[/bold] {state}")

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
