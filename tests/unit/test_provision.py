"""shared.provision: each service gets only its own secrets, owned by the service uid,
and a second run (every `docker compose up`) keeps every secret."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from shared.launcher import SERVICES
from shared.provision import main, provision

pytestmark = pytest.mark.unit


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_each_service_folder_holds_only_its_own_secrets(tmp_path: Path) -> None:
    auth = provision(tmp_path, SERVICES)
    secrets = tmp_path / "secrets"
    platform = json.loads((secrets / "platform.json").read_text())
    for name in SERVICES:
        folder = secrets / "services" / name
        expected = {"nats-password"}
        if name in ("retrieval", "leakage"):
            expected.add("canary-secret")
        if name == "audit":
            expected.add("clickhouse-password")
        assert files(folder) == expected, name
        assert (folder / "nats-password").read_text() == platform[f"svc-{name}"]
        assert stat.S_IMODE((folder / "nats-password").stat().st_mode) == 0o600
    # Distinct passwords: one service's file opens no other service's user.
    assert len({platform[f"svc-{n}"] for n in SERVICES}) == len(SERVICES)
    canary = (secrets / "canary-secret").read_text()
    assert len(canary) >= 32 and canary not in ("dev", "changeme")
    for reader in ("retrieval", "leakage"):
        assert (secrets / "services" / reader / "canary-secret").read_text() == canary
    clickhouse = (secrets / "clickhouse-password").read_text()
    assert (secrets / "clickhouse" / "password").read_text() == clickhouse
    assert (secrets / "services" / "audit" / "clickhouse-password").read_text() == clickhouse
    # nats-server's users file holds hashes, never a clear password.
    users = (auth.nats_dir / "auth.conf").read_text()
    assert "svc-gateway" in users and platform["svc-gateway"] not in users


def test_a_second_run_keeps_every_secret(tmp_path: Path) -> None:
    provision(tmp_path, SERVICES)
    before = {p: p.read_text() for p in (tmp_path / "secrets").rglob("*") if p.is_file()}
    provision(tmp_path, SERVICES)
    after = {p: p.read_text() for p in (tmp_path / "secrets").rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root, as compose's provision has")
def test_the_command_hands_the_files_to_the_service_uid(tmp_path: Path) -> None:
    data = tmp_path / "nats-data"
    args = [str(tmp_path), "--uid=65534", "--grafana-uid=472", f"--writable={data}"]
    assert main(args) == 0
    gateway = tmp_path / "secrets" / "services" / "gateway" / "nats-password"
    assert gateway.stat().st_uid == 65534 and gateway.parent.stat().st_uid == 65534
    assert (tmp_path / "secrets" / "grafana" / "admin-password").stat().st_uid == 472
    assert (tmp_path / "nats" / "auth.conf").stat().st_uid == 65534
    assert data.stat().st_uid == 65534
    # Ops' file of every password stays root's.
    assert (tmp_path / "secrets" / "platform.json").stat().st_uid == 0
