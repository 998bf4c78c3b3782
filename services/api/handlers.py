"""api's HTTP routes: authenticate the key, translate, ask the gateway, translate back.

Each route is a module-level `(request) -> response` reading the Deps from the app's
state; ROUTES is the one table that registers them. The tenant is the key's tenant and
nothing else: no body field or header names it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.api import formats
from services.api.adapters import Keys
from services.api.errors import Api, error_response, unauthenticated
from services.api.ports import GatewayPort
from services.api.server import HttpServer
from services.api.settings import ApiSettings
from shared.apikeys import locate
from shared.audit import AuditTrail
from shared.bus import ServiceCallError
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.base import ErrorCode, ErrorInfo, new_id
from shared.messages.completions import ClientInfo, CompletionPublished, CreateCompletion
from shared.service import Handlers
from shared.tenancy import UNATTRIBUTED

SERVICE = "api"
SSE = "text/event-stream"


@dataclass(frozen=True)
class Rendering:
    """How one API renders the answer: whole, or as its own SSE events."""

    stream: bool
    whole: Callable[[CompletionPublished], Response]
    live: Callable[[formats.Events], AsyncIterator[bytes]]


# (tenant, body, client) -> the platform's request and how to render its answer
Translate = Callable[[str, bytes, ClientInfo], tuple[CreateCompletion, Rendering]]


@dataclass(frozen=True)
class Deps:
    settings: ApiSettings
    keys: Keys
    gateway: GatewayPort
    trail: AuditTrail
    server: HttpServer

    async def drain(self) -> None:
        # After the subscribers stopped, before the bus closes: in-flight HTTP requests
        # still need the gateway to answer them.
        await self.server.stop()

    async def close(self) -> None:
        await self.server.stop()  # already stopped when drained; here if drain never ran


def presented_key(request: Request) -> str:
    """Anthropic's SDK sends x-api-key, OpenAI's Authorization: Bearer; take either."""
    key = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not key and auth[:7].lower() == "bearer ":
        key = auth[7:].strip()
    return key


def client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:400] or None,
    )


def deps_of(request: Request) -> Deps:
    """The Deps bootstrap put on the app's state before it served a request."""
    deps: Deps = request.app.state.deps
    return deps


async def authenticate(request: Request, deps: Deps, api: Api) -> str | Response:
    key = presented_key(request)
    tenant = await deps.keys.tenant_of(key) if key else None
    if tenant is not None:
        return tenant
    claimed = locate(key)
    await deps.trail.record(
        tenant_id=claimed[0] if claimed else UNATTRIBUTED,
        request_id=new_id(),
        event_type=AuditEventType.ACCESS_DENIED,
        action=f"http.{request.url.path}",
        status=AuditStatus.FAILURE,
        error="missing or invalid API key" if key else "no API key",
        resource_type="api_key",
        resource_id=claimed[1] if claimed else "",  # the key id, never the key
        client_ip=request.client.host if request.client else None,
    )
    return unauthenticated(api)


async def read_body(request: Request, limit: int, api: Api) -> bytes | Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(limit, api)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _too_large(limit, api)
    return body


async def complete(request: Request, api: Api, translate: Translate) -> Response:
    deps = deps_of(request)
    tenant = await authenticate(request, deps, api)
    if isinstance(tenant, Response):
        return tenant
    body = await read_body(request, deps.settings.max_body_bytes, api)
    if isinstance(body, Response):
        return body
    try:
        create, rendering = translate(tenant, body, client_info(request))
    except formats.BadRequest as bad:
        info = ErrorInfo(code=ErrorCode.MALFORMED_REQUEST, message=str(bad))
        return error_response(info, api)
    if rendering.stream:
        return await stream(deps.gateway, create, rendering, api)
    try:
        done = await deps.gateway.complete(create)
    except ServiceCallError as failed:
        return error_response(failed.info, api)
    if done.error is not None:
        return error_response(done.error, api)
    return rendering.whole(done)


async def stream(
    gateway: GatewayPort, create: CreateCompletion, rendering: Rendering, api: Api
) -> Response:
    """Refusals before any text (limits, unknown model...) are plain HTTP errors; after
    the first text, the stream carries them. A client that hangs up stops the call."""
    events = await gateway.stream(create)
    try:
        first = await events.next()
    except ServiceCallError as failed:
        await events.close()
        return error_response(failed.info, api)
    if isinstance(first, CompletionPublished) and first.error is not None:
        await events.close()
        return error_response(first.error, api)

    async def all_events() -> formats.Events:
        yield first
        while not events.finished:
            try:
                yield await events.next()
            except ServiceCallError as failed:
                yield CompletionPublished(
                    tenant_id=create.tenant_id, request_id=create.request_id, error=failed.info
                )
                return

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in rendering.live(all_events()):
                yield chunk
        finally:
            await events.close()  # before the end: the client left; stop the model

    return StreamingResponse(body(), 200, media_type=SSE)


def anthropic(tenant: str, body: bytes, client: ClientInfo) -> tuple[CreateCompletion, Rendering]:
    req = formats.anthropic_request(body)
    create = formats.anthropic_to_platform(tenant, req, client)
    return create, Rendering(
        stream=req.stream,
        whole=lambda done: JSONResponse(formats.anthropic_message(done, req.max_tokens)),
        live=lambda events: formats.anthropic_stream(events, req.model, create.request_id),
    )


def openai(tenant: str, body: bytes, client: ClientInfo) -> tuple[CreateCompletion, Rendering]:
    req = formats.openai_request(body)
    create = formats.openai_to_platform(tenant, req, client)
    cap = req.max_completion_tokens or req.max_tokens
    usage = bool((req.stream_options or {}).get("include_usage"))
    return create, Rendering(
        stream=req.stream,
        whole=lambda done: JSONResponse(formats.openai_completion(done, cap)),
        live=lambda events: formats.openai_stream(events, req.model, create.request_id, usage),
    )


async def messages(request: Request) -> Response:
    return await complete(request, "anthropic", anthropic)


async def chat_completions(request: Request) -> Response:
    return await complete(request, "openai", openai)


async def models(request: Request) -> Response:
    deps = deps_of(request)
    api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
    tenant = await authenticate(request, deps, api)
    if isinstance(tenant, Response):
        return tenant
    try:
        resolved = await deps.gateway.models(tenant)
    except ServiceCallError as failed:
        return error_response(failed.info, api)
    if resolved.config is None:
        info = resolved.error or ErrorInfo(code=ErrorCode.UNKNOWN_TENANT, message="unknown")
        return error_response(info, api)
    return JSONResponse(model_list(tenant, resolved.config.allowed_models))


# The one table of the door's routes.
ROUTES = (
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
)
# No bus subscribers of its own (it is a client of the gateway): compose gets an empty table.
HANDLERS: Handlers[Deps] = Handlers(SERVICE)


def build_app(deps: Deps | None = None) -> Starlette:
    """The ASGI app of ROUTES; the routes read `deps` from its state (bootstrap sets it
    before the server starts, when the Deps hold that server)."""
    app = Starlette(routes=list(ROUTES))
    if deps is not None:
        app.state.deps = deps
    return app


def model_list(tenant: str, allowed: list[str]) -> dict[str, object]:
    """One body both SDKs parse: OpenAI reads object/data[].id, Anthropic
    data[].id/type/display_name and the paging fields."""
    now = datetime.now(UTC)
    data = [
        {
            "id": m,
            "object": "model",
            "created": int(now.timestamp()),
            "owned_by": tenant if m.startswith("ft:") else "tenantry",
            "type": "model",
            "display_name": m,
            "created_at": now.isoformat(),
        }
        for m in allowed
    ]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": allowed[0] if allowed else None,
        "last_id": allowed[-1] if allowed else None,
    }


def _too_large(limit: int, api: Api) -> Response:
    info = ErrorInfo(code=ErrorCode.PAYLOAD_TOO_LARGE, message=f"body over {limit} bytes")
    return error_response(info, api)
