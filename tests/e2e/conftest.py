from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import natsserver
from shared.launcher import Platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The platform as `make run` starts it: nats-server (auth on) plus every service as
    its own process."""
    running = Platform(
        data_dir=tmp_path_factory.mktemp("platform"),
        nats_url=f"nats://127.0.0.1:{natsserver.free_port()}",
        # No key: the honest offline provider answers, so this never leaves the machine.
        extra_env={"ANTHROPIC_API_KEY": "", "TENANTRY_API_PORT": str(natsserver.free_port())},
    )
    running.start(timeout_s=120)
    yield running
    running.stop()
    # Least privilege must not cost a single message: no service process (they connect
    # as "tenantry-<service>") may have hit a permission nats-server refused. Tests that
    # probe the permissions on purpose connect without that name.
    refused = [
        line
        for line in (running.log_dir / "nats-server.log").read_text().splitlines()
        if "Violation" in line and ":tenantry-" in line and "/user:svc-" in line
    ]
    assert not refused, "services hit NATS permission violations:\n" + "\n".join(refused[:20])
