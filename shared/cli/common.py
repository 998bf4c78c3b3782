"""What every CLI command shares: options, clients built from the environment, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from shared.client import TenantClient
from shared.embedded_auth import ops_credentials_from
from shared.ops import OpsClient

console = Console()

NatsUrl = Annotated[str, typer.Option(envvar="TENANTRY_NATS_URL", help="NATS server URL.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
DEFAULT_URL = "nats://127.0.0.1:4222"


def credentials() -> tuple[str | None, str | None]:
    """Ops credentials: the environment, else the embedded platform's secrets file."""
    user = os.environ.get("TENANTRY_NATS_USER")
    if user:
        return user, os.environ.get("TENANTRY_NATS_PASSWORD")
    found = ops_credentials_from(Path(os.environ.get("TENANTRY_DATA_DIR", "var")))
    return found if found else (None, None)


def ops_client(nats_url: str) -> OpsClient:
    user, password = credentials()
    return OpsClient(nats_url, user=user, password=password)


def tenant_client(tenant: str, nats_url: str) -> TenantClient:
    user, password = credentials()
    return TenantClient(tenant, nats_url, user=user, password=password)


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)
