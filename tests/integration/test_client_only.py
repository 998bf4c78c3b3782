"""The client and the CLI work from a client-only install.

A subprocess makes FastStream, Qdrant, chDB, numpy, anthropic, bcrypt and the services
unimportable (tests/support/client_only.py), then uses the sync and async clients
against a real nats-server with per-tenant users, where this test plays the gateway.
Also: the CLI runs there, and `run`/`demo` say in one line what they are missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared import natsserver, subjects
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import CompletionPublished, CreateCompletion
from shared.messages.retrieval import DocumentsIngested, IngestDocuments
from shared.natsauth import NatsUser, hash_password, render, tenant_user, write_private

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT, IDLE = "acme", "beta"
PASSWORDS = {"tenant-acme": "acme-pw-1", "tenant-beta": "beta-pw-2", "gateway": "gw-pw-3"}
BLOCKER = "import tests.support.client_only  # installs the import blocker\n"


@pytest.fixture(scope="module")
def auth_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("client-only-nats")
    users = [
        tenant_user(TENANT, hash_password(PASSWORDS["tenant-acme"])),
        tenant_user(IDLE, hash_password(PASSWORDS["tenant-beta"])),
        NatsUser("gateway", hash_password(PASSWORDS["gateway"]), publish=[">"], subscribe=[">"]),
    ]
    conf = root / "auth.conf"
    write_private(conf, render(users))
    proc, port = natsserver.start(root / "store", config_file=conf, log_file=root / "nats.log")
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


class StubGateway:
    """Answers acme's request, request.sync and ingest subjects like the gateway does,
    refusing some questions the way metering and promptconfig refuse them."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.attempts: Counter[str] = Counter()

    def answer(self, req: CreateCompletion) -> CompletionPublished:
        self.attempts[req.question] += 1
        error = None
        if req.question == "ratelimit-always" or (
            req.question == "ratelimit-once" and self.attempts[req.question] == 1
        ):
            error = ErrorInfo(
                code=ErrorCode.RATE_LIMITED,
                message="rate limit of requests per minute reached; retry in 1 s",
                retryable=True,
            )
        elif req.question == "budget":
            error = ErrorInfo(code=ErrorCode.BUDGET_EXCEEDED, message="monthly budget reached")
        elif req.question == "unknown-tenant":
            error = ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown tenant")
        if error:
            return CompletionPublished(
                tenant_id=req.tenant_id, request_id=req.request_id, error=error
            )
        return CompletionPublished(
            tenant_id=req.tenant_id, request_id=req.request_id, text=f"echo: {req.question}"
        )

    async def on_sync(self, msg: Msg) -> None:
        done = self.answer(CreateCompletion.model_validate_json(msg.data))
        await msg.respond(done.model_dump_json().encode())

    async def on_durable(self, msg: Msg) -> None:
        # Like the gateway's intake: a JetStream-shaped ack, then the completion.
        req = CreateCompletion.model_validate_json(msg.data)
        await msg.respond(json.dumps({"stream": "TENANTRY_REQUESTS", "seq": 1}).encode())
        done = self.answer(req)
        await self.nc.publish(
            subjects.completion(req.tenant_id, req.request_id), done.model_dump_json().encode()
        )

    async def on_ingest(self, msg: Msg) -> None:
        req = IngestDocuments.model_validate_json(msg.data)
        done = DocumentsIngested(
            tenant_id=req.tenant_id,
            request_id=req.request_id,
            documents=len(req.documents),
            chunks=len(req.documents),
        )
        await msg.respond(done.model_dump_json().encode())


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(auth_nats: str) -> AsyncIterator[StubGateway]:
    nc = await nats.connect(auth_nats, user="gateway", password=PASSWORDS["gateway"])
    stub = StubGateway(nc)
    await nc.subscribe(subjects.request_sync(TENANT), cb=stub.on_sync)
    await nc.subscribe(subjects.request(TENANT), cb=stub.on_durable)
    await nc.subscribe(subjects.ingest(TENANT), cb=stub.on_ingest)
    await nc.flush()
    yield stub
    await nc.close()


def client_env(nats_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "TENANTRY_NATS_URL": nats_url,
        "TENANTRY_TENANT_ID": TENANT,
        "TENANTRY_NATS_USER": "tenant-acme",
        "TENANTRY_NATS_PASSWORD": PASSWORDS["tenant-acme"],
        "TENANTRY_DATA_DIR": str(REPO / "no-such-dir"),
    }
    return env


async def python(code: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_client_works_without_the_platform_packages(
    gateway: StubGateway, auth_nats: str
) -> None:
    env = client_env(auth_nats) | {
        "OTHER_TENANT": IDLE,
        "IDLE_TENANT": IDLE,
        "IDLE_USER": "tenant-beta",
        "IDLE_PASSWORD": PASSWORDS["tenant-beta"],
        "DEAD_URL": f"nats://127.0.0.1:{natsserver.free_port()}",
    }
    code, out, err = await python(
        BLOCKER + "from tests.support.client_only import main; main()", env
    )
    assert code == 0, err
    r = json.loads(out)
    assert r["loaded"] == []  # none of the platform's packages was imported
    assert r["tenant"] == TENANT  # from TENANTRY_TENANT_ID
    assert r["ask_sync"]["value"] == "echo: hello"
    assert r["ask"]["value"] == "echo: hello durable"
    assert r["ingest"]["value"] == 1
    # Retried after the refusal's own retry_after (1 s), then answered.
    assert r["rate_limited_once"]["value"] == "echo: ratelimit-once"
    assert gateway.attempts["ratelimit-once"] == 2
    assert r["rate_limited_once"]["seconds"] >= 1.0
    # Bounded: max_retries=1 means two attempts, then the typed error with its code.
    assert r["rate_limited_always"]["error"] == "RateLimited"
    assert r["rate_limited_always"]["code"] == "rate_limited"
    assert r["rate_limited_always"]["retry_after"] == 1.0
    assert gateway.attempts["ratelimit-always"] == 2
    # Not retryable: one attempt (the sync client's, plus TenantClient's below).
    assert r["budget"]["error"] == "BudgetExceeded" and r["budget"]["code"] == "budget_exceeded"
    assert r["unknown"]["error"] == "NotFound" and r["unknown"]["code"] == "unknown_tenant"
    assert r["tenant_client_budget"] == "budget_exceeded"
    assert gateway.attempts["budget"] == 2
    # A subject the credentials may not use fails at once, not after the 120 s timeout.
    assert r["forbidden"]["code"] == "permission_denied" and r["forbidden"]["seconds"] < 2
    # Nobody answers beta's ingest: two retries with backoff, then Unavailable.
    assert r["unavailable"]["code"] == "unavailable"
    assert 0.3 < r["unavailable"]["seconds"] < 3
    assert r["wrong_password"]["error"] == "AuthenticationFailed"
    assert "not-it" not in r["wrong_password"]["message"]
    assert r["no_nats"]["error"] == "ConnectionFailed" and r["no_nats"]["seconds"] < 2


CLI = BLOCKER + (
    "import json, os, sys\n"
    "from shared.cli.main import main\n"
    "sys.argv = ['tenantry', *json.loads(os.environ['ARGS'])]\n"
    "main()\n"
)


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--help"], 0, "tenants"),
        (["--version"], 0, "tenantry "),
        # Ops commands need only the bus: with no promptconfig it says so.
        (["tenants", "show", "-t", TENANT], 1, "error: the promptconfig service is not running"),
        (["run"], 1, "error: `tenantry run` runs the platform, which needs its packages"),
        (["demo"], 1, "pip install 'tenantry[platform]' (missing: faststream"),
    ],
)
async def test_the_cli_works_without_the_platform_packages(
    auth_nats: str, args: list[str], code: int, expected: str
) -> None:
    # The gateway user may publish anywhere, like ops may publish on svc.>.
    env = client_env(auth_nats) | {
        "TENANTRY_NATS_USER": "gateway",
        "TENANTRY_NATS_PASSWORD": PASSWORDS["gateway"],
    }
    got, out, err = await python(CLI, env | {"ARGS": json.dumps(args)})
    assert got == code, err
    text = out if code == 0 else err
    assert expected in text
    if code:
        assert out == "" and len(err.strip().splitlines()) <= 2 and "Traceback" not in err
