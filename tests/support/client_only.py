"""Runs in a subprocess for tests/integration/test_client_only.py: uses the client as a
tenant's service would, in a Python where the platform's packages cannot be imported.

The blocker goes in before anything else is imported; then every scenario runs against
the real nats-server (and the test's stub gateway) the parent gives in the environment,
and one JSON object of results is printed on stdout.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

# What a client-only install does not have: the services and their packages.
BLOCKED = frozenset(
    {"faststream", "qdrant_client", "chdb", "clickhouse_connect", "numpy", "anthropic"}
    | {"services", "bcrypt", "ahocorasick", "uvloop", "phonenumbers", "stdnum"}
)


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked for this test: {fullname}", name=fullname)
        return None


sys.meta_path.insert(0, Blocker())

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from shared.client import (  # noqa: E402
    AsyncTenantry,
    AuthenticationFailed,
    BudgetExceeded,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    TenantClient,
    Tenantry,
    TenantryError,
    Unavailable,
)
from shared.messages.retrieval import Document  # noqa: E402


def outcome(fn: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        value = fn()
    except TenantryError as exc:
        return {
            "error": type(exc).__name__,
            "code": str(exc.code),
            "message": exc.message,
            "retry_after": getattr(exc, "retry_after", None),
            "seconds": time.monotonic() - started,
        }
    return {"value": value, "seconds": time.monotonic() - started}


def sync_scenarios() -> dict[str, Any]:
    """The synchronous client, everything from the environment."""
    results: dict[str, Any] = {}
    with Tenantry() as client:
        results["tenant"] = client.tenant_id
        results["ask_sync"] = outcome(lambda: client.ask_sync("hello").text)
        results["ask"] = outcome(lambda: client.ask("hello durable").text)
        results["ingest"] = outcome(
            lambda: client.ingest([Document(document_id="a", text="Alpha.")]).chunks
        )
        results["rate_limited_once"] = outcome(lambda: client.ask_sync("ratelimit-once").text)
        results["budget"] = outcome(lambda: client.ask_sync("budget").text)
        results["unknown"] = outcome(lambda: client.ask("unknown-tenant").text)
    with Tenantry(max_retries=1) as client:
        results["rate_limited_always"] = outcome(lambda: client.ask_sync("ratelimit-always").text)
    return results


async def async_scenarios() -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with TenantClient() as old:  # the original contract: refusals as replies
        reply = await old.ask_sync("budget")
        results["tenant_client_budget"] = reply.error.code.value if reply.error else None
    # Credentials that may not publish on another tenant's subjects: refused at once.
    async with AsyncTenantry(os.environ["OTHER_TENANT"], max_retries=0) as other:
        started = time.monotonic()
        try:
            await other.ask_sync("hello")
        except Forbidden as exc:
            results["forbidden"] = {"code": exc.code, "seconds": time.monotonic() - started}
    # No gateway answers for this tenant: retried (bounded), then Unavailable.
    beta = AsyncTenantry(
        os.environ["IDLE_TENANT"],
        user=os.environ["IDLE_USER"],
        password=os.environ["IDLE_PASSWORD"],
    )
    started = time.monotonic()
    try:
        async with beta:
            await beta.ingest([Document(document_id="a", text="x")])
    except Unavailable as exc:
        results["unavailable"] = {"code": exc.code, "seconds": time.monotonic() - started}
    user = os.environ["TENANTRY_NATS_USER"]
    for name, client in (
        ("wrong_password", AsyncTenantry(user=user, password="not-it")),
        ("no_nats", AsyncTenantry(nats_url=os.environ["DEAD_URL"])),
    ):
        started = time.monotonic()
        try:
            async with client:
                pass
        except (AuthenticationFailed, ConnectionFailed) as exc:
            results[name] = {
                "error": type(exc).__name__,
                "message": exc.message,
                "seconds": time.monotonic() - started,
            }
    return results


def main() -> None:
    results = sync_scenarios() | asyncio.run(async_scenarios())
    results["loaded"] = sorted(
        name for name in sys.modules if name.split(".")[0] in BLOCKED and sys.modules[name]
    )
    # Classes imported above must be the ones raised (BudgetExceeded etc. are used by name).
    results["classes"] = [c.__name__ for c in (BudgetExceeded, NotFound, RateLimited)]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
