"""`tenantry ingest` and `tenantry ask`: act as a tenant's client service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from shared.cli.common import DEFAULT_URL, NatsUrl, TenantOpt, console, fail, tenant_client
from shared.messages.retrieval import Document
from shared.money import format_usd


def ingest(
    tenant: TenantOpt,
    files: Annotated[list[Path], typer.Argument(help="Text or Markdown files.", exists=True)],
    nats_url: NatsUrl = DEFAULT_URL,
    batch: Annotated[int, typer.Option(min=1, max=256, help="Documents per request.")] = 16,
) -> None:
    """Ingest files into the tenant's own collection (document id = file name)."""

    async def go() -> None:
        async with tenant_client(tenant, nats_url) as client:
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
                        fail(result.error.message)
                    chunks += result.chunks
                    progress.advance(task, len(group))
        console.print(f"ingested {len(files)} files as {chunks} chunks into {tenant}")

    asyncio.run(go())


def ask(
    tenant: TenantOpt,
    question: Annotated[str, typer.Argument(help="The question.")],
    model: Annotated[str | None, typer.Option(help="Model; tenant default if unset.")] = None,
    nats_url: NatsUrl = DEFAULT_URL,
) -> None:
    """Ask a question as the tenant and print the completion."""

    async def go() -> None:
        async with tenant_client(tenant, nats_url) as client:
            done = await client.ask(question, model=model)
        if done.error:
            fail(f"{done.error.code.value}: {done.error.message}")
        console.print(done.text)
        console.print(
            f"[dim]model={done.model} tokens in/out={done.usage.input_tokens}/"
            f"{done.usage.output_tokens} cost={format_usd(done.cost_nanousd)} "
            f"sources={','.join(sorted({c.document_id for c in done.citations}))}[/dim]"
        )

    asyncio.run(go())
