"""The platform under test: every service as a process (auth on), the stub as the model,
N onboarded tenants each with their own documents, and a `send` for the load generator.

The load generator speaks as ops (one connection; ops may publish any tenant's request
subject and read every completion), so a hundred tenants cost one socket, not a hundred.
The concurrency-1 figures use the real TenantClient with a tenant's own credentials.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import psutil
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bench.stub import StubProcess
from shared import natsserver, subjects
from shared.launcher import Groups, Platform
from shared.messages.completions import CreateCompletion
from shared.messages.lifecycle import OnboardTenant
from shared.messages.retrieval import Document, DocumentsIngested, IngestDocuments
from shared.messages.tenants import Tier
from shared.ops import OpsClient

SYLLABLES = "ka lo mi ne ru sa ti vo ze ba du fe gi ho ju ly pa qe ri so tu vi wa xo".split()
# Only these services may run as several copies in embedded mode: access rewrites the
# one auth file, retrieval and audit hold the Qdrant Edge worker and chDB folder locks.
SCALABLE = ("promptconfig", "metering", "leakage", "llm", "gateway")


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def document_text(rng: random.Random, words: int = 300) -> str:
    """Pseudo-words: no two tenants share a shingle, so leakage scanning stays quiet."""
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words:
        sentences.append(" ".join(word(rng) for _ in range(rng.randint(6, 14))).capitalize() + ".")
    return " ".join(sentences)


async def tenant_request(
    nc: NatsClient,
    tenant_id: str,
    subject: str,
    body: bytes,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Msg:
    """Ops speaking for a tenant on its subjects. The gateway answers a tenant subject
    only in that tenant's own inbox (shared.replies), which ops may read."""
    inbox = f"{subjects.tenant_inbox_prefix(tenant_id)}.{uuid.uuid4().hex}"
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        await nc.publish(subject, body, reply=inbox, headers=headers)
        return await sub.next_msg(timeout=timeout)
    finally:
        await sub.unsubscribe()


@dataclass
class Tenant:
    tenant_id: str
    user: str
    password: str = field(repr=False)
    question: str


@dataclass
class Rig:
    platform: Platform
    stub: StubProcess
    tenants: list[Tenant]
    nc: NatsClient
    pending: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    top_k: int = 4
    api_url: str = ""  # the HTTP door (services/api)

    async def send(self, i: int) -> bool:
        """One request for tenant i mod N through the durable request stream."""
        tenant = self.tenants[i % len(self.tenants)]
        req = CreateCompletion(
            tenant_id=tenant.tenant_id, question=tenant.question, top_k=self.top_k
        )
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending[req.request_id] = done
        try:
            ack = await tenant_request(
                self.nc,
                tenant.tenant_id,
                subjects.request(tenant.tenant_id),
                req.model_dump_json().encode(),
                30,
                headers={"Nats-Msg-Id": req.event_id},
            )
            if b'"error"' in ack.data:
                raise RuntimeError(f"request not queued: {ack.data[:200]!r}")
            return await done
        finally:
            self.pending.pop(req.request_id, None)

    async def _on_completion(self, msg: Msg) -> None:
        body = json.loads(msg.data)
        waiter = self.pending.get(body.get("request_id", ""))
        error = body.get("error")
        if error:
            code = str(error.get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1
        if waiter is not None and not waiter.done():
            waiter.set_result(not error)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by every process, the generator too."""
        pids = {**self.platform.pids(), "stub": self.stub.pid, "bench": os.getpid()}
        out = {}
        for name, pid in pids.items():
            try:
                times = psutil.Process(pid).cpu_times()
                out[name] = times.user + times.system
            except psutil.NoSuchProcess:
                out[name] = 0.0
        return out

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for name, pid in {**self.platform.pids(), "stub": self.stub.pid}.items():
            try:
                out[name] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
            except psutil.NoSuchProcess:
                out[name] = 0.0
        return out


async def open_rig(
    data_dir: Path,
    tenants: int,
    replicas: int,
    delay_s: float,
    docs_per_tenant: int = 3,
    cohost: Groups = (),
) -> Rig:
    """`cohost`: services sharing a process (shared.launcher.parse_cohost); those run one
    copy, `replicas` applies to the scalable services left alone."""
    stub = StubProcess(delay_s)
    api_port = natsserver.free_port()
    hosted = {name for group in cohost for name in group}
    platform = Platform(
        data_dir=data_dir,
        nats_url=f"nats://127.0.0.1:{natsserver.free_port()}",
        replicas={name: replicas for name in SCALABLE if name not in hosted},
        cohost=cohost,
        extra_env={
            "ANTHROPIC_API_KEY": "sk-ant-bench-stub",
            "ANTHROPIC_BASE_URL": stub.url,
            "TENANTRY_LOG_LEVEL": "WARNING",
            "TENANTRY_API_PORT": str(api_port),
        },
    )
    await asyncio.to_thread(platform.start, 180)
    user, password = platform.ops_credentials
    rng = random.Random(7)
    made: list[Tenant] = []
    async with OpsClient(platform.nats_url, user=user, password=password) as ops:
        gate = asyncio.Semaphore(4)

        async def onboard(n: int) -> Tenant:
            tid = f"bench-{n:03d}"
            name = f"{word(rng).capitalize()} {word(rng).capitalize()} {n}"
            texts = [document_text(rng) for _ in range(docs_per_tenant)]
            question = " ".join(texts[0].split()[5:12])
            async with gate:
                result = await ops.onboard(
                    OnboardTenant(tenant_id=tid, name=name, tier=Tier.ENTERPRISE, actor="bench")
                )
                if result.error:
                    raise RuntimeError(f"onboarding {tid}: {result.error.message}")
                docs = [Document(document_id=f"doc-{d}", text=t) for d, t in enumerate(texts)]
                reply = await tenant_request(
                    ops.nc,
                    tid,
                    subjects.ingest(tid),
                    IngestDocuments(tenant_id=tid, documents=docs).model_dump_json().encode(),
                    60,
                )
                ingested = DocumentsIngested.model_validate_json(reply.data)
                if ingested.error:
                    raise RuntimeError(f"ingest {tid}: {ingested.error.message}")
            return Tenant(tid, result.user, result.password, question)

        made = list(await asyncio.gather(*(onboard(n) for n in range(tenants))))
    nc = await nats.connect(platform.nats_url, user=user, password=password, name="bench-load")
    rig = Rig(platform, stub, made, nc, api_url=f"http://127.0.0.1:{api_port}")
    await nc.subscribe(subjects.ALL_COMPLETIONS, cb=rig._on_completion)
    return rig


async def close_rig(rig: Rig) -> None:
    await rig.nc.drain()
    await asyncio.to_thread(rig.platform.stop)
    rig.stub.stop()


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-pipeline-")


def summary(rig: Rig) -> dict[str, Any]:
    return {"tenants": len(rig.tenants), "errors_by_code": dict(rig.errors)}
