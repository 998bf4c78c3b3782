"""Embedded mode's NATS security, on by default: every service and ops get their own
user; tenants get theirs from the access service at onboarding.

Layout under DATA_DIR:
  secrets/platform.json   clear passwords of ops and the services (0600): what the
                          launcher hands each process and what the CLI reads by default
  nats/nats.conf          includes auth.conf
  nats/static-users.json  ops and service users (bcrypt hashes), read by access
  nats/auth.conf          the users nats-server loads; rewritten by access on changes
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from shared.natsauth import (
    NatsUser,
    hash_password,
    new_password,
    ops_user,
    render,
    service_user,
    write_private,
)

OPS_USER = "ops"


@dataclass(frozen=True)
class EmbeddedAuth:
    nats_dir: Path
    passwords: dict[str, str] = field(repr=False)

    @property
    def config_file(self) -> Path:
        return self.nats_dir / "nats.conf"

    @property
    def pid_file(self) -> Path:
        return self.nats_dir / "nats-server.pid"

    def service_credentials(self, service: str) -> tuple[str, str]:
        user = f"svc-{service}"
        return user, self.passwords[user]

    @property
    def ops_credentials(self) -> tuple[str, str]:
        return OPS_USER, self.passwords[OPS_USER]


def secrets_file(data_dir: Path) -> Path:
    return data_dir / "secrets" / "platform.json"


def prepare(data_dir: Path, services: tuple[str, ...]) -> EmbeddedAuth:
    """Create (or reuse) the platform's passwords and write nats-server's auth files."""
    path = secrets_file(data_dir)
    passwords: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for user in [OPS_USER, *(f"svc-{s}" for s in services)]:
        passwords.setdefault(user, new_password())
    write_private(path, json.dumps(passwords, indent=2))

    static: list[NatsUser] = [ops_user(hash_password(passwords[OPS_USER]))]
    static += [service_user(s, hash_password(passwords[f"svc-{s}"])) for s in services]
    nats_dir = data_dir / "nats"
    write_private(nats_dir / "static-users.json", json.dumps([u.to_dict() for u in static]))
    auth_conf = nats_dir / "auth.conf"
    # Keep tenants' users from the last run (access re-syncs them from KV when it
    # starts); the static users are always written afresh.
    write_private(auth_conf, render([*static, *_tenant_users(auth_conf)]))
    write_private(nats_dir / "nats.conf", 'include "auth.conf"\n')
    return EmbeddedAuth(nats_dir, passwords)


def ops_credentials_from(data_dir: Path) -> tuple[str, str] | None:
    path = secrets_file(data_dir)
    if not path.exists():
        return None
    return OPS_USER, json.loads(path.read_text())[OPS_USER]


def _tenant_users(auth_conf: Path) -> list[NatsUser]:
    if not auth_conf.exists():
        return []
    users = []
    for line in auth_conf.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            user = NatsUser.from_dict(json.loads(line))
            if user.user.startswith("tenant-"):
                users.append(user)
    return users


def main(argv: list[str]) -> int:
    """`python -m shared.embedded_auth DIR`: prepare DIR/nats and DIR/secrets (compose init)."""
    from shared.launcher import SERVICES

    prepare(Path(argv[0]) if argv else Path("var"), SERVICES)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
