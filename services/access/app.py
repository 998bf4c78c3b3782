"""access's bootstrap: the credentials bucket and, in embedded mode, nats-server's users."""

from __future__ import annotations

from services.access import credentials
from services.access.adapters import (
    CredentialStore,
    FileServerUsers,
    ServerUsers,
    UnmanagedServerUsers,
)
from services.access.handlers import SERVICE, Deps, build_router
from services.access.settings import AccessSettings
from shared.audit import AuditTrail
from shared.bus import CREDENTIALS_BUCKET, make_broker
from shared.service import Service


def bootstrap(settings: AccessSettings | None = None) -> Service:
    settings = settings or AccessSettings()
    broker = make_broker(settings, SERVICE)
    server: ServerUsers = (
        FileServerUsers(settings.nats_auth_dir, settings.nats_url, settings.reload_timeout_s)
        if settings.nats_auth_dir
        else UnmanagedServerUsers()
    )
    deps = Deps(store=None, server=server, trail=AuditTrail(broker, SERVICE))  # type: ignore[arg-type]
    service = Service(SERVICE, settings, broker)

    async def open_store() -> None:
        kv = await broker.connection.jetstream().key_value(CREDENTIALS_BUCKET)
        deps.store = CredentialStore(kv)
        # The server's users file may predate tenants onboarded since: bring it in line.
        await credentials.sync(deps.store, deps.server)

    service.on_start.append(open_store)
    broker.include_router(build_router(deps))
    return service
