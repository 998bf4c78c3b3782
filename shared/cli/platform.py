"""`tenantry run` and `tenantry demo`: the embedded platform and its demo scenario."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from shared.cli import common
from shared.cli.common import console, fail
from shared.money import format_usd

# What the services import that a client-only install does not have.
PLATFORM_MODULES = ("faststream", "qdrant_client", "chdb", "numpy", "anthropic", "bcrypt")


def run(
    cohost: Annotated[
        str,
        typer.Option(
            envvar="TENANTRY_COHOST",
            help="Services sharing a process: none (one process each), critical (the "
            "request path in one), all, or groups like 'gateway,llm;audit,access'.",
        ),
    ] = "none",
) -> None:
    """Start NATS and every service, seed two demo tenants, answer one request each, serve.

    Uses the global --nats-url (where nats-server listens) and --data-dir.
    """
    # common.settings, read when called: the global options replace it after import.
    opts = common.settings
    _platform("run", opts.nats_url, opts.data_dir, keep_serving=True, cohost=cohost)


def demo() -> None:
    """The same scenario as `run`, then stop everything and exit."""
    opts = common.settings
    _platform("demo", opts.nats_url, opts.data_dir, keep_serving=False)


def missing_platform_modules() -> list[str]:
    missing = []
    for name in PLATFORM_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def _platform(
    command: str, nats_url: str, data_dir: Path, keep_serving: bool, cohost: str = "none"
) -> None:
    missing = missing_platform_modules()
    if missing:
        fail(
            f"`tenantry {command}` runs the platform, which needs its packages: "
            f"pip install 'tenantry[platform]' (missing: {', '.join(missing)})"
        )
    from shared.demo import DemoFailed, run_demo
    from shared.launcher import Platform, PortInUse, parse_cohost

    try:
        groups = parse_cohost(cohost)
    except ValueError as exc:
        fail(str(exc))
    platform = Platform(data_dir=data_dir, nats_url=nats_url, cohost=groups)
    shared = "".join(f"; {'+'.join(g)} in one process" for g in groups)
    console.print(
        f"starting nats-server and {len(platform.services)} services{shared} "
        f"(data in {data_dir}/) …"
    )
    started = time.perf_counter()
    try:
        platform.start()
    except (PortInUse, RuntimeError, TimeoutError) as exc:
        fail(str(exc))
    console.print(
        f"platform ready in {time.perf_counter() - started:.1f}s; logs in {platform.log_dir}/"
    )
    try:
        results = asyncio.run(run_demo(nats_url, *platform.ops_credentials))
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
            door = f"http://{os.environ.get('TENANTRY_API_HOST', '127.0.0.1')}:" + os.environ.get(
                "TENANTRY_API_PORT", "8080"
            )
            console.print(
                f"serving on {nats_url}, HTTP door (Anthropic/OpenAI APIs) on {door} "
                "(keys: tenantry keys issue -t TENANT); Ctrl-C to stop"
            )
            _wait_for_signal(platform)
    except DemoFailed as exc:
        platform.stop()
        fail(str(exc))
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
