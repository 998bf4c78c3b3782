"""`tenantry run` stopped the way a user stops it: Ctrl-C in its terminal, which sends
SIGINT to the whole foreground process group at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared import natsserver
from shared.launcher import SERVICES

pytestmark = pytest.mark.e2e


def test_ctrl_c_stops_every_service_cleanly_and_nats_server_last(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    env.update(
        ANTHROPIC_API_KEY="",
        TENANTRY_API_PORT=str(natsserver.free_port()),
        TENANTRY_NATS_URL=f"nats://127.0.0.1:{natsserver.free_port()}",
        TENANTRY_DATA_DIR=str(tmp_path),
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "shared.cli.main", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,  # its own group, as a terminal gives it
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("Ctrl-C to stop" in line for line in lines):
            assert run.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        nats_pid = int((tmp_path / "nats" / "nats-server.pid").read_text())
        # Out of the terminal's group: the Ctrl-C below cannot reach it.
        assert os.getpgid(nats_pid) != run.pid
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=90) == 0, "".join(lines)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)  # nats-server follows its parent (pdeathsig)
    reader.join(timeout=10)
    assert not any("launcher.kill" in line for line in lines), "".join(lines)
    stopped = set()
    for name in SERVICES:
        log = (tmp_path / "logs" / f"{name}.log").read_text()
        events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
        if "service.stopped" in events:
            stopped.add(name)
        # No service saw the server vanish under it while it was stopping.
        assert "UnexpectedEOF" not in log, (name, log[-2000:])
    assert stopped == set(SERVICES)
