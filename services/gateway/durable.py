"""The durable intake: a tenant's durable request, stored in the request stream on the
tenant's behalf, and JetStream's own acknowledgement handed back."""

from __future__ import annotations

import json

import nats.errors
from nats.aio.client import Client as NatsClient

from shared import subjects
from shared.logging import get_logger

log = get_logger("tenantry.gateway")


async def queue(
    nc: NatsClient, timeout_s: float, raw_tenant: str, headers: dict[str, str], body: bytes
) -> bytes:
    """Durable intake: store the request in the request stream and hand the client
    JetStream's own acknowledgement (so `js.publish` works unchanged in any client).

    Tenants publish on tenant.<tid>.request, a plain subject; the stream captures only
    intake.<tid>.request, which no tenant may publish on. JetStream acknowledges a
    captured publish to the publisher's reply subject whatever it is, so a stream on the
    tenant's own subject would let a tenant aim the server's acks anywhere."""
    msg_id = headers.get("Nats-Msg-Id")
    # Only de-duplication travels on; a client cannot set any other JetStream header
    # (e.g. Nats-Expected-*, Nats-TTL) on the platform's stream.
    forwarded = {"Nats-Msg-Id": msg_id[:128]} if msg_id else None
    try:
        ack = await nc.request(
            subjects.queued_request_for_token(raw_tenant),
            body,
            timeout=timeout_s,
            headers=forwarded,
        )
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        log.warning("intake.not_stored")
        return js_error(503, "the request stream did not store the request; retry")
    return ack.data


def js_error(code: int, description: str) -> bytes:
    """A reply in JetStream's error shape, which NATS clients raise as an API error."""
    return json.dumps({"error": {"code": code, "description": description}}).encode()
