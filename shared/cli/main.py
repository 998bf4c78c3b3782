"""`tenantry`: the ops CLI. Everything goes over the bus; it never opens a store."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shared.client import TenantClient
from shared.messages.audit import AuditEventType
from shared.messages.retrieval import Document
from shared.messages.tenants import Tier
from shared.money import format_usd
from shared.ops import OpsClient

app = typer.Typer(help="Tenantry: multi-tenant AI platform operations.", no_args_is_help=True)
tenants = typer.Typer(help="Create, show and delete tenants.", no_args_is_help=True)
audit = typer.Typer(help="Read a tenant's audit trail.", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
app.add_typer(audit, name="audit")
console = Console()

NatsUrl = Annotated[str, typer.Option(envvar="TENANTRY_NATS_URL", help="NATS server URL.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
DEFAULT_URL = "nats://127.0.0.1:4222"


def _credentials() -> tuple[str | None, str | None]:
    return os.environ.get("TENANTRY_NATS_USER"), os.environ.get("TENANTRY_NATS_PASSWORD")


def _ops(nats_url: str) -> OpsClient:
    user, password = _credentials()
    return OpsClient(nats_url, user=user, password=password)


def _tenant_client(tenant: str, nats_url: str) -> TenantClient:
    user, password = _credentials()
    return TenantClient(tenant, nats_url, user=user, password=password)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@app.command()
def run(nats_url: NatsUrl = DEFAULT_URL, data_dir: Path = Path("var")) -> None:
    """Start NATS and every service, seed two demo tenants, answer one request each, serve."""
    _platform(nats_url, data_dir, keep_serving=True)


@app.command()
def demo(nats_url: NatsUrl = DEFAULT_URL, data_dir: Path = Path("var")) -> None:
    """The same scenario as `run`, then stop everything and exit."""
    _platform(nats_url, data_dir, keep_serving=False)


def _platform(nats_url: str, data_dir: Path, keep_serving: bool) -> None:
    from shared.demo import DemoFailed, run_demo
    from shared.launcher import Platform, PortInUse

    platform = Platform(data_dir=data_dir, nats_url=nats_url)
    console.print(
        f"starting nats-server and {len(platform.services)} services (data in {data_dir}/) …"
    )
    started = time.perf_counter()
    try:
        platform.start()
    except (PortInUse, RuntimeError, TimeoutError) as exc:
        _fail(str(exc))
    console.print(
        f"platform ready in {time.perf_counter() - started:.1f}s; logs in {platform.log_dir}/"
    )
    try:
        results = asyncio.run(run_demo(nats_url))
        for r in results:
            done = r.completion
            console.rule(f"[bold]{r.tenant.tenant_id}[/bold] ({r.tenant.name})")
            console.print(f"[bold]Q:[/bold] {r.tenant.question}")
            console.print(f"[bold]A:[/bold] {done.text}")
            console.print(
                f"[dim]model {done.model} · {r.seconds * 1000:.0f} ms end to end · tokens "
                f"in/out {done.usage.input_tokens}/{done.usage.output_tokens} · sources "
                f"{', '.join(sorted({c.document_id for c in done.citations}))}[/dim]"
            )
            console.print(
                f"cost this month {format_usd(r.usage.cost_nanousd)} over {r.usage.requests} "
                f"request(s) · audit rows {r.usage.audit_events}"
            )
        if keep_serving:
            console.print(f"serving on {nats_url}; Ctrl-C to stop")
            _wait_for_signal(platform)
    except DemoFailed as exc:
        platform.stop()
        _fail(str(exc))
    finally:
        platform.stop()


def _wait_for_signal(platform: object) -> None:
    stop = {"now": False}

    def handler(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["now"]:
        time.sleep(0.5)


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
        _fail(str(exc))

    async def go() -> None:
        async with _ops(nats_url) as ops:
            saved = await ops.save_tenant(
                tid, default_profile(name, tier, admin_email), actor="cli"
            )
        if saved.error:
            _fail(saved.error.message)
        verb = "created" if saved.created else "unchanged (already exists)"
        assert saved.config is not None
        console.print(f"tenant [bold]{tid}[/bold] {verb}, config version {saved.config.version}")

    asyncio.run(go())


@tenants.command("show")
def tenants_show(tenant: TenantOpt, nats_url: NatsUrl = DEFAULT_URL) -> None:
    """Show a tenant's configuration and rendered system prompt."""

    async def go() -> None:
        async with _ops(nats_url) as ops:
            found = await ops.get_tenant(tenant)
        if found.error or found.config is None:
            _fail(found.error.message if found.error else "not found")
        assert found.config is not None
        console.print_json(found.config.model_dump_json())
        console.print("[bold]system prompt:[/bold]\n" + found.system_prompt)

    asyncio.run(go())


@app.command()
def ingest(
    tenant: TenantOpt,
    files: Annotated[list[Path], typer.Argument(help="Text or Markdown files.", exists=True)],
    nats_url: NatsUrl = DEFAULT_URL,
    batch: Annotated[int, typer.Option(min=1, max=256, help="Documents per request.")] = 16,
) -> None:
    """Ingest files into the tenant's own collection (document id = file name)."""

    async def go() -> None:
        async with _tenant_client(tenant, nats_url) as client:
            chunks = 0
            with Progress(console=console) as progress:
                task = progress.add_task("ingesting", total=len(files))
                for start in range(0, len(files), batch):
                    group = files[start : start + batch]
                    docs = [
                        Document(document_id=f.name, text=f.read_text(encoding="utf-8"))
                        for f in group
                    ]
                    result = await client.ingest(docs)
                    if result.error:
                        _fail(result.error.message)
                    chunks += result.chunks
                    progress.advance(task, len(group))
        console.print(f"ingested {len(files)} files as {chunks} chunks into {tenant}")

    asyncio.run(go())


@app.command()
def ask(
    tenant: TenantOpt,
    question: Annotated[str, typer.Argument(help="The question.")],
    model: Annotated[str | None, typer.Option(help="Model; tenant default if unset.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Ask a question as the tenant and print the completion."""

    async def go() -> None:
        async with _tenant_client(tenant, nats_url) as client:
            done = await client.ask(question, model=model)
        if done.error:
            _fail(f"{done.error.code.value}: {done.error.message}")
        console.print(done.text)
        console.print(
            f"[dim]model={done.model} tokens in/out={done.usage.input_tokens}/"
            f"{done.usage.output_tokens} cost={format_usd(done.cost_nanousd)} "
            f"sources={','.join(sorted({c.document_id for c in done.citations}))}[/dim]"
        )

    asyncio.run(go())


@app.command()
def usage(
    tenant: TenantOpt,
    month: Annotated[str | None, typer.Option(help="YYYY-MM; current month if unset.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show a tenant's spend for a month, by model."""

    async def go() -> None:
        async with _ops(nats_url) as ops:
            report = await ops.usage(tenant, month)
        if report.error:
            _fail(report.error.message)
        table = Table(title=f"{tenant} usage {report.month}")
        for col in ("model", "requests", "input tokens", "output tokens", "cost"):
            table.add_column(col)
        for row in report.by_model:
            table.add_row(
                row.model,
                str(row.requests),
                str(row.input_tokens),
                str(row.output_tokens),
                format_usd(row.cost_nanousd),
            )
        table.add_row("total", str(report.requests), "", "", format_usd(report.cost_nanousd))
        console.print(table)
        console.print(f"audit events (all time): {report.audit_events}")

    asyncio.run(go())


@audit.command("show")
def audit_show(
    tenant: TenantOpt,
    event_type: Annotated[AuditEventType | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Show a tenant's newest audit events."""

    async def go() -> None:
        async with _ops(nats_url) as ops:
            page = await ops.audit(tenant, event_type, limit)
        if page.error:
            _fail(page.error.message)
        table = Table(title=f"{tenant} audit ({len(page.rows)} of {page.total})")
        for col in ("time", "type", "service", "action", "status", "error"):
            table.add_column(col, overflow="fold")
        for row in page.rows:
            table.add_row(
                row.occurred_at.isoformat(timespec="seconds"),
                row.event_type,
                row.service,
                row.action,
                row.status,
                row.error,
            )
        console.print(table)

    asyncio.run(go())


def _slug(name: str) -> str:
    import re

    return (
        re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", name.lower())).strip("-")[:48].strip("-")
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
