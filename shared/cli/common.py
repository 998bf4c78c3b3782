"""What every CLI command shares: options, clients built from the environment, errors."""

from __future__ import annotations

import os
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from shared.client import TenantClient
from shared.ops import OpsClient

console = Console()

NatsUrl = Annotated[str, typer.Option(envvar="TENANTRY_NATS_URL", help="NATS server URL.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
DEFAULT_URL = "nats://127.0.0.1:4222"


def credentials() -> tuple[str | None, str | None]:
    return os.environ.get("TENANTRY_NATS_USER"), os.environ.get("TENANTRY_NATS_PASSWORD")


def ops_client(nats_url: str) -> OpsClient:
    user, password = credentials()
    return OpsClient(nats_url, user=user, password=password)


def tenant_client(tenant: str, nats_url: str) -> TenantClient:
    user, password = credentials()
    return TenantClient(tenant, nats_url, user=user, password=password)


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)
