"""What every CLI command shares: global connection options, clients, output, errors.

Output contract: results go to stdout (tables, or JSON with `--json`); errors,
progress and notes go to stderr, so `tenantry ... > file` never captures an error.
Every failure is one `error: ...` line (plus at most one hint line) and a non-zero
exit; a traceback only with `tenantry --debug`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.client import AsyncTenantry
from shared.client_credentials import Credentials, load_credentials_file
from shared.client_errors import (
    AUTHENTICATION_FAILED,
    CONNECTION_FAILED,
    TenantryError,
    error_from_info,
)
from shared.client_transport import DEFAULT_NATS_URL
from shared.messages.base import ErrorInfo, Reply
from shared.ops import OpsClient
from shared.tenancy import InvalidTenantId, validate_tenant_id

T = TypeVar("T")
R = TypeVar("R", bound=Reply)

# Results: stdout. Everything else: stderr. soft_wrap everywhere: Rich would otherwise
# break long lines at 80 columns when not writing to a terminal.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.", show_default=False)]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON on stdout (for scripts) instead of tables.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ActorOpt = Annotated[str, typer.Option("--actor", help="Who is acting (recorded in audit).")]

# The embedded platform's ops password (written by `tenantry run`), relative to --data-dir.
# Read here rather than through shared.embedded_auth, which needs bcrypt (a platform
# package): the CLI must work from a client-only install.
PLATFORM_SECRETS = Path("secrets") / "platform.json"
OPS_USER = "ops"


@dataclass
class Globals:
    """`tenantry [global options] COMMAND ...`, set once by the app's callback."""

    nats_url: str = DEFAULT_NATS_URL
    creds: Path | None = None
    user: str | None = None
    data_dir: Path = Path("var")
    timeout_s: float | None = None
    connect_timeout_s: float = 2.0
    debug: bool = False


settings = Globals()


def ops_credentials() -> Credentials:
    """--creds, else --user (password from TENANTRY_NATS_PASSWORD), else the embedded
    platform's ops credentials under --data-dir, else anonymous."""
    if settings.creds is not None:
        return load_credentials_file(settings.creds)
    if settings.user:
        return Credentials(user=settings.user, password=os.environ.get("TENANTRY_NATS_PASSWORD"))
    secrets = settings.data_dir / PLATFORM_SECRETS
    try:
        password = json.loads(secrets.read_text())[OPS_USER]
    except (OSError, ValueError, KeyError, TypeError):
        return Credentials()
    return Credentials(user=OPS_USER, password=str(password))


def ops_client(timeout_s: float = 30.0) -> OpsClient:
    """A one-shot ops connection: fails fast, never reconnects."""
    return OpsClient(
        settings.nats_url,
        credentials=ops_credentials(),
        timeout_s=settings.timeout_s or timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        keep_reconnecting=False,
    )


def tenant_client(tenant: str, timeout_s: float = 120.0) -> AsyncTenantry:
    """Acting as the tenant's client service (ops credentials may do that)."""
    return AsyncTenantry(
        tenant,
        settings.nats_url,
        credentials=ops_credentials(),
        timeout_s=settings.timeout_s or timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        # A command is one attempt: a person (or script) decides whether to try again.
        max_retries=0,
        keep_reconnecting=False,
    )


def valid_tenant(tenant: str) -> str:
    try:
        return validate_tenant_id(tenant)
    except InvalidTenantId as exc:
        fail(str(exc))  # the message escapes the raw id


def check(reply: R) -> R:
    """A refusal in a reply is an error like any other."""
    if reply.error is not None:
        raise error_from_info(reply.error)
    return reply


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; every expected failure becomes one line on stderr."""
    try:
        return asyncio.run(work)
    except TenantryError as exc:
        # A platform refusal names its code too: scripts match on it, people search it.
        fail(f"{exc.message} [{exc.code}]" if exc.info else exc.message, hint=_hint(exc))
    except InvalidTenantId as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(describe_invalid(exc))
    except Exception as exc:
        # shared.bus.ServiceCallError and the like carry a client-safe ErrorInfo; matched
        # by shape, because importing shared.bus would need FastStream.
        info = getattr(exc, "info", None)
        if isinstance(info, ErrorInfo):
            fail(info.message)
        raise


def describe_invalid(exc: ValidationError) -> str:
    """The first problem, by field: never the rejected value (it may be a secret)."""
    errors = exc.errors()
    if not errors:
        return f"invalid {exc.title}"
    where = ".".join(str(p) for p in errors[0]["loc"])
    return f"{where}: {errors[0]['msg']}" if where else str(errors[0]["msg"])


def _hint(exc: TenantryError) -> str:
    if exc.code == AUTHENTICATION_FAILED and "anonymous" in exc.message:
        return (
            "no credentials found: set TENANTRY_NATS_USER and TENANTRY_NATS_PASSWORD, pass "
            f"--creds FILE, or --data-dir of a running platform (looked in "
            f"{settings.data_dir.resolve()})"
        )
    if exc.code == CONNECTION_FAILED:
        return "is the platform running? --nats-url or TENANTRY_NATS_URL says where it listens"
    return ""


def fail(message: str, *, hint: str = "", code: int = 1) -> NoReturn:
    if settings.debug and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    err_console.print("[red]error:[/red] ", end="")
    err_console.print(" ".join(message.split()), markup=False)
    if hint:
        err_console.print(hint, markup=False, style="dim")
    raise typer.Exit(code)


def note(message: str) -> None:
    """Progress and remarks: stderr, so stdout holds only results."""
    err_console.print(message, markup=False, style="dim")


def add_row(table: Table, *values: str) -> None:
    """A table row shown as written: audit rows, names and actors are client-supplied
    text, and Rich would otherwise read `[...]` in them as markup."""
    table.add_row(*(Text(v) for v in values))


def print_json(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    """JSON on stdout. Replies lose their envelope (ids, timestamps): scripts want the data."""
    data: Any = value
    if isinstance(value, BaseModel):
        data = value.model_dump(
            mode="json",
            exclude={"event_id", "request_id", "occurred_at", "schema_version", "error"},
        )
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def confirm(yes: bool, question: str) -> None:
    """Ask before a destructive command; without a terminal, --yes is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("refusing without confirmation: pass --yes (-y) when not at a terminal")
    typer.confirm(question, abort=True, err=True)
