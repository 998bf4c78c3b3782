"""api's composition root: the keys bucket, the gateway port and the HTTP server, all
started with the service and stopped with it (HTTP stops taking requests before the bus
is drained)."""

from __future__ import annotations

from faststream.nats import NatsBroker

from services.api.adapters import KeyLookup, Keys
from services.api.handlers import HANDLERS, SERVICE, Deps, build_app
from services.api.ports import Gateway, GatewayPort
from services.api.server import HttpServer
from services.api.settings import ApiSettings
from shared.audit import AuditTrail
from shared.bus import API_KEYS_BUCKET, make_broker
from shared.logging import get_logger
from shared.service import Service, compose

log = get_logger("tenantry.api")


async def bootstrap(
    settings: ApiSettings,
    broker: NatsBroker,
    *,
    keys: Keys | None = None,
    gateway: GatewayPort | None = None,
) -> Deps:
    """Open the keys bucket and the gateway's reply inbox (on a connected broker), start
    the HTTP server, and return api's Deps (which stop the server when drained)."""
    nc = broker.connection
    if gateway is None:
        real = Gateway(nc, settings.request_timeout_s)
        await real.start()
        gateway = real
    keys = keys or KeyLookup(await nc.jetstream().key_value(API_KEYS_BUCKET))
    app = build_app()
    server = HttpServer(app, settings.api_host, settings.api_port)
    deps = Deps(
        settings=settings,
        keys=keys,
        gateway=gateway,
        trail=AuditTrail(broker, SERVICE),
        server=server,
    )
    app.state.deps = deps  # before the first request: the server starts below
    await server.start()
    log.info("api.listening", host=settings.api_host, port=server.port)
    return deps


def make_service(settings: ApiSettings | None = None) -> Service:
    settings = settings or ApiSettings()
    broker = make_broker(settings, SERVICE)
    return compose(SERVICE, settings, broker, HANDLERS, lambda: bootstrap(settings, broker))
