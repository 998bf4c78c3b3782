"""access's bootstrap: the credentials bucket and, in embedded mode, nats-server's users."""

from __future__ import annotations

from services.access import credentials
from services.access.adapters import (
    CredentialStore,
    FileServerUsers,
    ServerUsers,
    UnmanagedServerUsers,
)
from services.access.apikeys import KeyStore
from services.access.handlers import SERVICE, Deps, build_router
from services.access.settings import AccessSettings
from shared.audit import AuditTrail
from shared.bus import API_KEYS_BUCKET, CREDENTIALS_BUCKET, make_broker
from shared.service import Service


def bootstrap(settings: AccessSettings | None = None) -> Service:
    settings = settings or AccessSettings()
    broker = make_broker(settings, SERVICE)
    server: ServerUsers = (
        FileServerUsers(settings.nats_auth_dir, settings.nats_url, settings.reload_timeout_s)
        if settings.nats_auth_dir
        else UnmanagedServerUsers()
    )
    deps = Deps(store=None, server=server, trail=AuditTrail(broker, SERVICE), keys=None)  # type: ignore[arg-type]
    service = Service(SERVICE, settings, broker)

    async def open_store() -> None:
        js = broker.connection.jetstream()
        deps.store = CredentialStore(await js.key_value(CREDENTIALS_BUCKET))
        deps.keys = KeyStore(await js.key_value(API_KEYS_BUCKET))
        # The server's users file may predate tenants onboarded since: bring it in line.
        await credentials.sync(deps.store, deps.server)

    service.on_start.append(open_store)
    broker.include_router(build_router(deps))
    return service
