"""`tenantry keys`: a tenant's API keys for the HTTP door (issue, list, rotate, revoke).

Keys are issued by the access service over the bus; only their SHA-256 is stored, so a
key is printed once, when issued or rotated, and never again.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.table import Table

from shared.cli.common import (
    ActorOpt,
    JsonOpt,
    TenantOpt,
    YesOpt,
    check,
    confirm,
    console,
    note,
    ops_client,
    print_json,
    run,
    valid_tenant,
)
from shared.messages.apikeys import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ApiKeysListed,
    IssueApiKey,
    ListApiKeys,
    RevokeApiKey,
    RotateApiKey,
)
from shared.messages.base import Reply

R = TypeVar("R", bound=Reply)
keys = typer.Typer(help="API keys of the HTTP door (Anthropic/OpenAI-compatible endpoints).")
KeyArg = Annotated[str, typer.Argument(help="Key id (12 hex characters).", show_default=False)]
TIMEOUT_S = 10.0


async def _ask(verb: str, message: BaseModel, reply_type: type[R]) -> R:
    async with ops_client(TIMEOUT_S) as ops:
        return check(await ops.call("access", verb, message, reply_type, TIMEOUT_S))


def _print_issued(issued: ApiKeyIssued, as_json: bool) -> None:
    if as_json:
        print_json({"key_id": issued.key_id, "name": issued.name, "key": issued.key})
        return
    console.print(f"key id: {issued.key_id}", markup=False)
    console.print(f"key:    {issued.key}", markup=False)
    note("the key is shown once and cannot be recovered: store it now")


@keys.command("issue")
def issue(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option("--name", help="A label, e.g. where it is used.")] = "",
    actor: ActorOpt = "ops",
    as_json: JsonOpt = False,
) -> None:
    """Issue a new API key for a tenant (printed once)."""
    tid = valid_tenant(tenant)
    message = IssueApiKey(tenant_id=tid, name=name, actor=actor)
    _print_issued(run(_ask("key_issue", message, ApiKeyIssued)), as_json)


@keys.command("list")
def list_keys(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """The tenant's keys: id, label, when and by whom issued, last four characters."""
    tid = valid_tenant(tenant)
    listed = run(_ask("key_list", ListApiKeys(tenant_id=tid), ApiKeysListed))
    if as_json:
        print_json([k.model_dump(mode="json") for k in listed.keys])
        return
    table = Table(title=f"{tid} API keys")
    for col in ("key id", "name", "ends with", "issued", "by"):
        table.add_column(col)
    for k in listed.keys:
        created = k.created_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(k.key_id, k.name, k.hint, created, k.created_by)
    console.print(table)


@keys.command("rotate")
def rotate(
    tenant: TenantOpt,
    key_id: KeyArg,
    yes: YesOpt = False,
    actor: ActorOpt = "ops",
    as_json: JsonOpt = False,
) -> None:
    """Replace a key: a new one is issued (printed once) and the old one revoked."""
    tid = valid_tenant(tenant)
    message = RotateApiKey(tenant_id=tid, key_id=key_id, actor=actor)  # validates first
    confirm(yes, f"Replace key {key_id}? Clients using it are refused from now on.")
    _print_issued(run(_ask("key_rotate", message, ApiKeyIssued)), as_json)


@keys.command("revoke")
def revoke(tenant: TenantOpt, key_id: KeyArg, yes: YesOpt = False, actor: ActorOpt = "ops") -> None:
    """Revoke a key: the next request with it is refused."""
    tid = valid_tenant(tenant)
    message = RevokeApiKey(tenant_id=tid, key_id=key_id, actor=actor)  # validates first
    confirm(yes, f"Revoke key {key_id}? Clients using it are refused from now on.")
    done = run(_ask("key_revoke", message, ApiKeyRevoked))
    console.print(f"{key_id}: {'revoked' if done.existed else 'no such key'}", markup=False)
