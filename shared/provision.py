"""Server mode's one-shot secrets step (`python -m shared.provision STATE [--uid N]`).

Run by compose's `provision` service (as root, before anything else) and by the
Kubernetes bootstrap Job. On top of `embedded_auth.prepare` (every NATS password and
nats-server's users file) it gives each service a folder holding only its own secrets,
so a container mounts that folder (a volume `subpath`) and nothing else:

  STATE/secrets/platform.json            every NATS password (ops reads its own here)
  STATE/secrets/canary-secret            the canary key (retrieval plants, leakage spots)
  STATE/secrets/clickhouse-password      the `tenantry` ClickHouse user's password
  STATE/secrets/services/<svc>/nats-password
  STATE/secrets/services/{retrieval,leakage}/canary-secret
  STATE/secrets/services/audit/clickhouse-password
  STATE/secrets/clickhouse/password      read by the ClickHouse image (CLICKHOUSE_PASSWORD_FILE)
  STATE/secrets/grafana/{clickhouse-password,admin-password}
  STATE/nats/{nats.conf,auth.conf,static-users.json}

Existing secrets are kept, so running it again (every `docker compose up`) changes
nothing but ownership. Files are 0400/0600 and owned by the uid the services run as
(fresh Docker volumes are root's, and nats-server runs as that same uid so that access,
sharing its PID namespace, may send it SIGHUP).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from shared.embedded_auth import EmbeddedAuth, prepare
from shared.natsauth import new_password, write_private

# The services that read the canary key and the ClickHouse password.
CANARY_READERS = ("retrieval", "leakage")
CLICKHOUSE_READERS = ("audit",)
SERVICE_UID = 65534  # `nobody`: what deploy/Dockerfile runs as
GRAFANA_UID = 472  # the grafana image's user


def _kept_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = new_password()
    write_private(path, value)
    return value


def _give(path: Path, value: str, uid: int | None) -> None:
    write_private(path, value)
    if uid is not None:
        os.chown(path, uid, uid)
        os.chown(path.parent, uid, uid)


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.chown(Path(folder) / name, uid, uid, follow_symlinks=False)


def provision(
    state: Path,
    services: Iterable[str],
    *,
    uid: int | None = None,
    grafana_uid: int | None = None,
    writable: Iterable[Path] = (),
) -> EmbeddedAuth:
    """Create or reuse every secret; `uid` None leaves ownership alone (tests, non-root)."""
    names = tuple(services)
    auth = prepare(state, names)
    secrets = state / "secrets"
    canary = _kept_secret(secrets / "canary-secret")
    clickhouse = _kept_secret(secrets / "clickhouse-password")
    for name in names:
        folder = secrets / "services" / name
        _give(folder / "nats-password", auth.service_credentials(name)[1], uid)
        if name in CANARY_READERS:
            _give(folder / "canary-secret", canary, uid)
        if name in CLICKHOUSE_READERS:
            _give(folder / "clickhouse-password", clickhouse, uid)
    # ClickHouse's entrypoint reads its file as root, before dropping privileges.
    write_private(secrets / "clickhouse" / "password", clickhouse)
    _give(secrets / "grafana" / "clickhouse-password", clickhouse, grafana_uid)
    admin = _kept_secret(secrets / "grafana-admin-password")
    _give(secrets / "grafana" / "admin-password", admin, grafana_uid)
    if uid is not None:
        # nats-server (same uid) writes its pid file here; access rewrites auth.conf.
        _chown_tree(auth.nats_dir, uid)
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
            _chown_tree(path, uid)
    return auth


def main(argv: list[str] | None = None) -> int:
    from shared.launcher import SERVICES

    parser = argparse.ArgumentParser(prog="python -m shared.provision", description=__doc__)
    parser.add_argument("state", type=Path, help="folder holding secrets/ and nats/")
    parser.add_argument("--uid", type=int, default=None, help="owner of the service files")
    parser.add_argument("--grafana-uid", type=int, default=None)
    parser.add_argument(
        "--writable", type=Path, action="append", default=[], help="also chown this folder"
    )
    args = parser.parse_args(argv)
    provision(
        args.state, SERVICES, uid=args.uid, grafana_uid=args.grafana_uid, writable=args.writable
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
