"""access's composition root: the credentials and keys buckets and, in embedded mode,
nats-server's users file."""

from __future__ import annotations

from faststream.nats import NatsBroker

from services.access import credentials
from services.access.adapters import (
    CredentialStore,
    FileServerUsers,
    ServerUsers,
    UnmanagedServerUsers,
)
from services.access.apikeys import KeyStore
from services.access.handlers import HANDLERS, SERVICE, Deps
from services.access.settings import AccessSettings
from shared.audit import AuditTrail
from shared.bus import API_KEYS_BUCKET, CREDENTIALS_BUCKET, make_broker
from shared.service import Service, compose


async def bootstrap(
    settings: AccessSettings,
    broker: NatsBroker,
    *,
    server: ServerUsers | None = None,
    store: CredentialStore | None = None,
    keys: KeyStore | None = None,
) -> Deps:
    """Open what access drives (on a connected broker) and return its Deps."""
    if server is None:
        server = (
            FileServerUsers(settings.nats_auth_dir, settings.nats_url, settings.reload_timeout_s)
            if settings.nats_auth_dir
            else UnmanagedServerUsers()
        )
    js = broker.connection.jetstream()
    store = store or CredentialStore(await js.key_value(CREDENTIALS_BUCKET))
    keys = keys or KeyStore(await js.key_value(API_KEYS_BUCKET))
    # The server's users file may predate tenants onboarded since: bring it in line.
    await credentials.sync(store, server)
    return Deps(store=store, server=server, keys=keys, trail=AuditTrail(broker, SERVICE))


def make_service(settings: AccessSettings | None = None) -> Service:
    settings = settings or AccessSettings()
    broker = make_broker(settings, SERVICE)
    return compose(SERVICE, settings, broker, HANDLERS, lambda: bootstrap(settings, broker))
