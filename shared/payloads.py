"""What travels to a subscriber, declared for the AsyncAPI documents (ours, shared.asyncapi,
and FastStream's own) without giving up the raw-message fast path."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any


def declare_payload(
    handler: Callable[..., Awaitable[None]],
    message: type[Any] | None,
    reply: type[Any] | None = None,
) -> None:
    """Document what travels to a raw-message handler, for both AsyncAPI documents.

    The broker runs with apply_types off and a decoder that hands over the message
    itself (shared.bus.make_broker: solving the signature per message was ~15 % of a
    service's CPU), so the handler's parameter says NatsMessage and FastStream's schema
    showed an empty payload. FastStream reads the signature once, when the subscriber is
    set up, and with apply_types off only uses it for the schema; so the parameter is
    annotated with the message model here, at no per-message cost (the handler still
    receives the NatsMessage). `tenantry_models` is what shared.asyncapi reads."""
    handler.tenantry_models = (  # type: ignore[attr-defined]
        (message, reply) if message and reply else (message,) if message else ()
    )
    if message is not None:
        first = next(iter(inspect.signature(handler).parameters))
        handler.__annotations__ = {**handler.__annotations__, first: message}
