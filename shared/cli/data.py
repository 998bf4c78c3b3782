"""`tenantry ingest` and `tenantry ask`: act as a tenant's client service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import Progress

from shared.cli.common import (
    JsonOpt,
    TenantOpt,
    console,
    err_console,
    fail,
    note,
    print_json,
    run,
    tenant_client,
    valid_tenant,
)
from shared.messages.completions import CompletionPublished
from shared.messages.retrieval import Document
from shared.money import format_usd


def ingest(
    tenant: TenantOpt,
    files: Annotated[
        list[Path],
        typer.Argument(help="Text or Markdown files.", exists=True, dir_okay=False),
    ],
    batch: Annotated[int, typer.Option(min=1, max=256, help="Documents per request.")] = 16,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files into the tenant's own collection (document id = file name)."""
    tid = valid_tenant(tenant)
    docs = [_document(f) for f in files]

    async def go() -> int:
        chunks = 0
        async with tenant_client(tid) as client:
            # Progress is not output: it goes to stderr, and only to a terminal.
            with Progress(
                console=err_console, transient=True, disable=not err_console.is_terminal
            ) as progress:
                task = progress.add_task("ingesting", total=len(docs))
                for start in range(0, len(docs), batch):
                    group = docs[start : start + batch]
                    chunks += (await client.ingest(group)).chunks
                    progress.advance(task, len(group))
        return chunks

    chunks = run(go())
    if as_json:
        print_json({"tenant_id": tid, "documents": len(docs), "chunks": chunks})
        return
    console.print(f"ingested {len(docs)} files as {chunks} chunks into {tid}", markup=False)


def _document(path: Path) -> Document:
    try:
        return Document(document_id=path.name, text=path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    except ValidationError as exc:
        fail(f"{path}: {exc.errors()[0]['msg']} (document id = file name; text must not be empty)")


def ask(
    tenant: TenantOpt,
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    model: Annotated[str | None, typer.Option(help="Model; tenant default if unset.")] = None,
    top_k: Annotated[
        int, typer.Option(min=0, max=20, help="Passages to retrieve; 0 turns retrieval off.")
    ] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Ask a question as the tenant: the answer on stdout, model and cost on stderr."""
    tid = valid_tenant(tenant)

    async def go() -> CompletionPublished:
        async with tenant_client(tid) as client:
            # Request/reply rather than the durable stream: a one-shot command should
            # learn at once that no gateway is running, not wait for its timeout.
            return await client.ask_sync(question, model=model, top_k=top_k)

    done = run(go())
    if as_json:
        print_json(done)
        return
    console.print(done.text, markup=False)
    note(
        f"model={done.model} tokens in/out={done.usage.input_tokens}/"
        f"{done.usage.output_tokens} cost={format_usd(done.cost_nanousd)} "
        f"sources={','.join(sorted({c.document_id for c in done.citations}))}"
    )
