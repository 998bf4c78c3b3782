"""`tenantry run` and `tenantry demo`: the embedded platform and its demo scenario."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from shared.cli.common import DEFAULT_URL, NatsUrl, console, fail
from shared.money import format_usd


def run(nats_url: NatsUrl = DEFAULT_URL, data_dir: Path = Path("var")) -> None:
    """Start NATS and every service, seed two demo tenants, answer one request each, serve."""
    _platform(nats_url, data_dir, keep_serving=True)


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
            console.print(f"serving on {nats_url}; Ctrl-C to stop")
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
