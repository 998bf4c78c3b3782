"""Embedded mode: nats-server from the wheel plus every service as its own process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import nats
from nats.aio.client import Client as NatsClient

from shared import embedded_auth, natsserver, subjects
from shared.embedded_auth import EmbeddedAuth
from shared.logging import get_logger

# Start order: the stores' owners first, the gateway (the front door) last.
SERVICES = (
    "access",
    "promptconfig",
    "audit",
    "metering",
    "retrieval",
    "leakage",
    "llm",
    "finetune",
    "gateway",
    "api",  # the HTTP door: clients of the gateway, so after it
)

# Embedded mode cannot run two of these: access rewrites the one auth file beside
# nats-server, retrieval and audit hold the Qdrant Edge worker and chDB folder locks.
SINGLE_COPY = ("access", "retrieval", "audit")

log = get_logger("tenantry.launcher")


class PortInUse(RuntimeError):
    pass


@dataclass
class Platform:
    data_dir: Path
    nats_url: str = "nats://127.0.0.1:4222"
    services: tuple[str, ...] = SERVICES
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)
    auth: bool = True  # secure as shipped: every process has its own NATS user
    # Extra copies of a service, e.g. {"gateway": 2}; absent means one. access, retrieval
    # and audit must stay single in embedded mode (auth file, Qdrant and chDB folders).
    replicas: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    # repr=False: the passwords inside must never reach a log line or a test report.
    _auth: EmbeddedAuth | None = field(default=None, repr=False)

    @property
    def ops_credentials(self) -> tuple[str | None, str | None]:
        return self._auth.ops_credentials if self._auth else (None, None)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def start(self, timeout_s: float = 60.0) -> None:
        several = [n for n in SINGLE_COPY if self.replicas.get(n, 1) > 1]
        if several:
            raise ValueError(f"embedded mode runs one copy of {', '.join(several)}")
        self.data_dir = self.data_dir.resolve()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = urlparse(self.nats_url).port or 4222
        if _listening(port):
            raise PortInUse(
                f"port {port} is already in use: stop what runs there or set TENANTRY_NATS_URL"
            )
        self._auth = embedded_auth.prepare(self.data_dir, self.services) if self.auth else None
        nats_proc, _ = natsserver.start(
            self.data_dir / "nats",
            port=port,
            log_file=self.log_dir / "nats-server.log",
            config_file=self._auth.config_file if self._auth else None,
            pid_file=self._auth.pid_file if self._auth else None,
        )
        self._procs["nats-server"] = nats_proc
        env = {
            **os.environ,
            "TENANTRY_NATS_URL": self.nats_url,
            "TENANTRY_DATA_DIR": str(self.data_dir),
            "TENANTRY_LOG_FORMAT": "json",
            **self.extra_env,
        }
        for name in self.services:
            for copy in range(self.replicas.get(name, 1)):
                # The first copy keeps the plain name (and log file) as before.
                key = name if copy == 0 else f"{name}-{copy + 1}"
                out = open(self.log_dir / f"{key}.log", "ab")  # the child owns it
                self._procs[key] = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", f"services.{name}"],
                    env={**env, **self._service_env(name)},
                    stdout=out,
                    stderr=out,
                )
        try:
            asyncio.run(self._wait_healthy(timeout_s))
        except BaseException:
            self.stop()
            raise

    def _service_env(self, name: str) -> dict[str, str]:
        if self._auth is None:
            return {}
        user, password = self._auth.service_credentials(name)
        env = {"TENANTRY_NATS_USER": user, "TENANTRY_NATS_PASSWORD": password}
        if name == "access":
            env["TENANTRY_NATS_AUTH_DIR"] = str(self._auth.nats_dir)
        return env

    async def _wait_healthy(self, timeout_s: float) -> None:
        user, password = self.ops_credentials
        nc = await nats.connect(self.nats_url, user=user, password=password)
        try:
            deadline = time.monotonic() + timeout_s
            for name in self.services:
                while True:
                    proc = self._procs[name]
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"service {name} exited with code {proc.returncode}; "
                            f"see {self.log_dir / (name + '.log')}"
                        )
                    try:
                        await nc.request(subjects.health(name), b"", timeout=0.5)
                        wanted = self.replicas.get(name, 1)
                        if wanted <= 1 or await _answers(nc, name) >= wanted:
                            break
                        raise nats.errors.TimeoutError
                    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"service {name} did not become ready") from None
                        await asyncio.sleep(0.1)
        finally:
            await nc.close()

    def running(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self._procs.items()}

    def pids(self) -> dict[str, int]:
        """Process ids by name (`gateway`, `gateway-2`, ..., `nats-server`), e.g. for RSS."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def stop(self) -> None:
        # Services first (they drain their subscriptions), nats-server last.
        for name, proc in reversed(list(self._procs.items())):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("launcher.kill", process=name)
                proc.kill()
                proc.wait()
        self._procs.clear()


async def _answers(nc: NatsClient, name: str) -> int:
    """How many copies answer health (each copy answers; it is not a queue group)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subjects.health(name), b"", reply=inbox)
        count = 0
        while True:
            try:
                await sub.next_msg(timeout=0.3)
            except (TimeoutError, nats.errors.TimeoutError):
                return count
            count += 1
    finally:
        await sub.unsubscribe()


def _listening(port: int) -> bool:
    try:
        natsserver.wait_for_port(port, timeout=0.1)
    except TimeoutError:
        return False
    return True
