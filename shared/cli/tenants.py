"""`tenantry tenants …`: onboard, inspect, offboard tenants and rotate their credentials."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shared.cli.common import (
    ActorOpt,
    JsonOpt,
    TenantOpt,
    YesOpt,
    add_row,
    check,
    confirm,
    console,
    fail,
    ops_client,
    print_json,
    run,
    settings,
    valid_tenant,
)
from shared.messages.access import CredentialsIssued
from shared.messages.lifecycle import OnboardingResult, OnboardTenant
from shared.messages.tenants import Tier
from shared.tenant_directory import TenantSummary

tenants = typer.Typer(
    help="Onboard, show, configure and offboard tenants.",
    no_args_is_help=True,
)

CredsOut = Annotated[
    Path | None,
    typer.Option(
        "--creds-out",
        dir_okay=False,
        help="Write the new credentials to this file (mode 0600) instead of printing them; "
        "use it with `tenantry --creds FILE` or TENANTRY_NATS_CREDS.",
    ),
]


@tenants.command("create")
def tenants_create(
    name: Annotated[str, typer.Option(help="Display name, e.g. 'Acme Corp'.")],
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="Tenant id; derived from the name if unset."),
    ] = None,
    tier: Annotated[Tier, typer.Option(help="Commercial tier; sets the default limits.")] = (
        Tier.FREE
    ),
    admin_email: Annotated[str | None, typer.Option(help="Tenant admin's email.")] = None,
    actor: ActorOpt = "cli",
    creds_out: CredsOut = None,
    as_json: JsonOpt = False,
    legacy_id: Annotated[str | None, typer.Option("--id", hidden=True)] = None,
) -> None:
    """Onboard a tenant: config, collection, metering state and NATS credentials.

    The password is shown once, here (or written to --creds-out), and never again.
    """
    tid = valid_tenant(tenant or legacy_id or _slug(name))

    async def go() -> OnboardingResult:
        async with ops_client(timeout_s=60.0) as ops:
            return check(
                await ops.onboard(
                    OnboardTenant(
                        tenant_id=tid, name=name, tier=tier, admin_email=admin_email, actor=actor
                    )
                )
            )

    done = run(go())
    if done.created and creds_out is not None:
        _write_creds(creds_out, tid, done.user, done.password)
    if as_json:
        shown = done.model_dump(mode="json", include={"tenant_id", "created", "steps", "user"})
        shown["inbox_prefix"] = done.inbox_prefix
        if done.created and creds_out is None:
            shown["password"] = done.password  # shown once: this command exists for that
        print_json(shown)
        return
    if not done.created:
        console.print(f"tenant {tid} already onboarded; nothing changed", markup=False)
        return
    console.print(f"tenant {tid} onboarded ({', '.join(done.steps)})", markup=False)
    _show_credentials(done.user, done.password, done.inbox_prefix, creds_out)


@tenants.command("rotate-credentials")
def tenants_rotate_credentials(
    tenant: TenantOpt,
    yes: YesOpt = False,
    actor: ActorOpt = "cli",
    creds_out: CredsOut = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue the tenant new NATS credentials; the old password stops working at once.

    Open connections using the old password are closed. The new password is shown once.
    """
    tid = valid_tenant(tenant)
    confirm(yes, f"Rotate {tid}'s credentials? Its clients are disconnected until updated.")

    async def go() -> CredentialsIssued:
        async with ops_client() as ops:
            return check(await ops.rotate_credentials(tid, actor))

    issued = run(go())
    if creds_out is not None:
        _write_creds(creds_out, tid, issued.user, issued.password)
    if as_json:
        shown = {"tenant_id": tid, "user": issued.user, "inbox_prefix": issued.inbox_prefix}
        if creds_out is None:
            shown["password"] = issued.password
        print_json(shown)
        return
    console.print(f"tenant {tid}: new credentials issued; the old password is revoked")
    _show_credentials(issued.user, issued.password, issued.inbox_prefix, creds_out)


@tenants.command("delete")
def tenants_delete(tenant: TenantOpt, yes: YesOpt = False, actor: ActorOpt = "cli") -> None:
    """Offboard a tenant: revoke its credentials and delete its data everywhere.

    Audit rows stay until their retention ends: the record of the deletion is kept.
    """
    tid = valid_tenant(tenant)
    confirm(yes, f"Delete tenant {tid} and all of its data?")

    async def go() -> None:
        async with ops_client(timeout_s=60.0) as ops:
            receipt = await ops.offboard(tid, actor)
        # What was removed is worth showing even when a later step failed.
        for store, count in receipt.removed.items():
            console.print(f"  removed {count:>6} {store}", markup=False)
        check(receipt)
        state = "deleted" if receipt.existed else "was not registered; leftovers removed"
        console.print(f"tenant {tid} {state}", markup=False)

    run(go())


@tenants.command("list")
def tenants_list(as_json: JsonOpt = False) -> None:
    """List every registered tenant: id, name, tier, configuration version."""

    async def go() -> list[TenantSummary]:
        async with ops_client() as ops:
            return [t async for t in ops.list_tenants()]

    found = run(go())
    if as_json:
        print_json([t.model_dump(mode="json") for t in found])
        return
    table = Table(title=f"{len(found)} tenant{'' if len(found) == 1 else 's'}")
    for col in ("tenant", "name", "tier", "version", "updated"):
        table.add_column(col, overflow="fold")
    for t in found:
        add_row(
            table,
            t.tenant_id,
            t.name,
            t.tier,
            str(t.version),
            t.updated_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@tenants.command("show")
def tenants_show(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Show a tenant's configuration and rendered system prompt."""
    tid = valid_tenant(tenant)

    async def go() -> None:
        async with ops_client() as ops:
            found = check(await ops.get_tenant(tid))
        if found.config is None:
            fail(f"tenant {tid} not found")
        if as_json:
            print_json(
                {
                    "config": found.config.model_dump(mode="json"),
                    "system_prompt": found.system_prompt,
                }
            )
            return
        console.print_json(found.config.model_dump_json())
        console.print("system prompt:", style="bold")
        console.print(found.system_prompt, markup=False)

    run(go())


def _show_credentials(user: str, password: str, inbox_prefix: str, creds_out: Path | None) -> None:
    if creds_out is not None:
        console.print(f"credentials written to {creds_out} (mode 0600)", markup=False)
        return
    console.print("NATS credentials for the tenant's client services (shown once):")
    console.print(f"  user:         {user}", markup=False)
    console.print(f"  password:     {password}", markup=False)
    console.print(f"  inbox prefix: {inbox_prefix}", markup=False)


def _write_creds(path: Path, tenant_id: str, user: str, password: str) -> None:
    """The file `--creds` and TENANTRY_NATS_CREDS read, readable by its owner only."""
    body = {
        "tenant_id": tenant_id,
        "user": user,
        "password": password,
        "nats_url": settings.nats_url,
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(body, indent=2) + "\n")
    except OSError as exc:
        # The credentials exist now but were not saved: say how to get new ones.
        fail(
            f"could not write {path}: {exc.strerror}",
            hint=f"run `tenantry tenants rotate-credentials -t {tenant_id}` to issue new ones",
        )


def _slug(name: str) -> str:
    """A default tenant id from a display name: ASCII-folded, lower-case, hyphenated."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:48].strip("-")
