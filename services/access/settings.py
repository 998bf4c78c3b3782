from pathlib import Path

from pydantic import Field

from shared.settings import TenantrySettings


class AccessSettings(TenantrySettings):
    nats_auth_dir: Path | None = Field(
        default=None,
        description="Folder with nats-server's auth.conf, static-users.json and pid file. "
        "Unset: credentials are recorded but the server's users are not managed here.",
    )
    reload_timeout_s: float = Field(default=10.0, gt=0, description="Wait for a reload.")
