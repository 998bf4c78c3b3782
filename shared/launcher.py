"""Embedded mode: nats-server from the wheel plus every service as its own process, or
some services sharing one (`cohost`, shared.cohost)."""

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

# The services one completion request crosses: the `critical` co-hosting group.
CRITICAL_PATH = ("gateway", "promptconfig", "metering", "leakage", "retrieval", "llm")

Groups = tuple[tuple[str, ...], ...]


def parse_cohost(value: str, services: tuple[str, ...] = SERVICES) -> Groups:
    """TENANTRY_COHOST / `tenantry run --cohost`: which services share a process.

    `none` (or empty): one process per service. `all`: every service in one. `critical`:
    the request path (CRITICAL_PATH) in one, the rest alone. Otherwise groups separated
    by `;`, each a comma-separated list of services (`critical` may stand for its
    members), e.g. `gateway,llm;audit,access`. Services in no group run alone; each
    group is returned in start order (SERVICES)."""
    value = value.strip().lower()
    if value in ("", "none"):
        return ()
    if value == "all":
        return (tuple(services),)
    groups: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for text in value.split(";"):
        names: list[str] = []
        for word in (w.strip() for w in text.split(",")):
            if word == "critical":
                names += [n for n in CRITICAL_PATH if n in services]
            elif word:
                names.append(word)
        if not names:
            raise ValueError(f"TENANTRY_COHOST {value!r}: an empty group")
        unknown = [n for n in names if n not in services]
        if unknown:
            raise ValueError(
                f"TENANTRY_COHOST: no service {', '.join(sorted(set(unknown)))} here "
                f"(services: {', '.join(services)})"
            )
        twice = sorted({n for n in names if n in seen or names.count(n) > 1})
        if twice:
            raise ValueError(f"TENANTRY_COHOST: {', '.join(twice)} named more than once")
        seen.update(names)
        if len(names) > 1:  # a group of one is a service alone
            groups.append(tuple(n for n in services if n in names))
    return tuple(groups)


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
    # Services that share a process (shared.cohost), e.g. parse_cohost("critical"); each
    # still has its own NATS user, subjects, settings and health. Default: none.
    cohost: Groups = ()
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
        hosted = [n for group in self.cohost for n in group]
        stray = [n for n in hosted if n not in self.services]
        if stray or len(hosted) != len(set(hosted)):
            raise ValueError(f"co-hosting groups {self.cohost} do not fit {self.services}")
        copied = [n for n in hosted if self.replicas.get(n, 1) > 1]
        if copied:
            raise ValueError(f"co-hosted services run one copy: {', '.join(copied)}")
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
            # A Ctrl-C reaches every process of the terminal's group at once: nats-server
            # exiting then raced the services' drains (make run once killed api after
            # 15 s, its connection broken mid-stop). Out of the group, it is stopped by
            # stop(), after every service.
            own_session=True,
        )
        self._procs["nats-server"] = nats_proc
        env = {
            **os.environ,
            "TENANTRY_NATS_URL": self.nats_url,
            "TENANTRY_DATA_DIR": str(self.data_dir),
            "TENANTRY_LOG_FORMAT": "json",
            **self.extra_env,
        }
        for group in self.cohost:
            key = self._unit(group[0])
            out = open(self.log_dir / f"{key}.log", "ab")  # the child owns it
            scoped = {k: v for name in group for k, v in self._service_env(name, group).items()}
            self._procs[key] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "shared.cohost", ",".join(group)],
                env={**env, **scoped},
                stdout=out,
                stderr=out,
            )
        for name in self.services:
            if self._unit(name) != name:
                continue
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

    def _service_env(self, name: str, group: tuple[str, ...] = ()) -> dict[str, str]:
        """A service's own variables; in a co-hosting group scoped to it alone
        (TENANTRY_<NAME>__..., see shared.cohost), so no two share a NATS user."""
        if self._auth is None:
            return {}
        user, password = self._auth.service_credentials(name)
        env = {"TENANTRY_NATS_USER": user, "TENANTRY_NATS_PASSWORD": password}
        if name == "access":
            env["TENANTRY_NATS_AUTH_DIR"] = str(self._auth.nats_dir)
        if group:
            from shared.cohost import scoped

            return {scoped(name, var): value for var, value in env.items()}
        return env

    def _unit(self, name: str) -> str:
        """The process that runs `name`: its own, or its co-hosting group's (`a+b+c`)."""
        for group in self.cohost:
            if name in group:
                return "+".join(group)
        return name

    async def _wait_healthy(self, timeout_s: float) -> None:
        user, password = self.ops_credentials
        nc = await nats.connect(self.nats_url, user=user, password=password)
        try:
            deadline = time.monotonic() + timeout_s
            for name in self.services:
                while True:
                    unit = self._unit(name)
                    proc = self._procs[unit]
                    if proc.poll() is not None:
                        where = f" (co-hosted in {unit})" if unit != name else ""
                        raise RuntimeError(
                            f"service {name}{where} exited with code {proc.returncode}; "
                            f"see {self.log_dir / (unit + '.log')}"
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
        """Process ids by name (`gateway`, `gateway-2`, ..., a co-hosting group's
        `gateway+llm`, `nats-server`), e.g. for RSS."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def stop(self) -> dict[str, int]:
        """Stop every process; their exit codes by name (0: drained and stopped cleanly,
        negative: killed by that signal)."""
        codes: dict[str, int] = {}
        # Services first (they drain their subscriptions), nats-server last.
        for name, proc in reversed(list(self._procs.items())):
            if proc.poll() is None:
                proc.terminate()
            try:
                codes[name] = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("launcher.kill", process=name)
                proc.kill()
                codes[name] = proc.wait()
        self._procs.clear()
        return codes


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
