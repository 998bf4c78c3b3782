"""Broker wiring: one way to build a broker, declare streams and KV buckets, publish and call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TypeVar

import nats.errors
from faststream.message import StreamMessage
from faststream.nats import ConsumerConfig, JStream, NatsBroker
from faststream.nats.security import NatsUserPassword
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from shared import subjects
from shared.messages.base import Envelope, ErrorCode, ErrorInfo
from shared.settings import TenantrySettings

R = TypeVar("R", bound=BaseModel)

DAY = 24 * 3600
TENANTS_BUCKET = "tenantry-tenants"
# Every saved tenant config version, immutable, key "<tid>.<version:08d>". Separate from
# TENANTS_BUCKET because KV history is capped at 64 and every version must be kept.
TENANT_VERSIONS_BUCKET = "tenantry-tenant-versions"
METERING_BUCKET = "tenantry-metering"
# A tenant's NATS user and bcrypt hash (never the password), key = tenant id.
CREDENTIALS_BUCKET = "tenantry-credentials"
# API keys of the HTTP door, key "<tid>.<key_id>" -> its SHA-256 and label (shared.apikeys).
API_KEYS_BUCKET = "tenantry-api-keys"
# Fine-tuning jobs and models, keys "<tid>.jobs.<job_id>", "<tid>.models.<suffix>", "<tid>.quota".
FINETUNE_BUCKET = "tenantry-finetune"

# A failing JetStream handler is nacked and redelivered; after MAX_DELIVER attempts
# nats-server emits a MAX_DELIVERIES advisory and audit copies the message to the
# dead-letter stream, so nothing is dropped silently.
MAX_DELIVER = 5

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=subjects.REQUESTS_STREAM,
        subjects=[subjects.ALL_QUEUED_REQUESTS],
        retention=RetentionPolicy.WORK_QUEUE,
        max_age=DAY,
        storage=StorageType.FILE,
        duplicate_window=120,
    ),
    StreamConfig(
        name=subjects.COMPLETIONS_STREAM,
        subjects=[subjects.ALL_COMPLETIONS],
        retention=RetentionPolicy.LIMITS,
        max_age=DAY,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[
            subjects.ALL_AUDIT_EVENTS,
            subjects.ALL_COST_EVENTS,
            subjects.ALL_CONFIG_EVENTS,
            subjects.ALL_BUDGET_EVENTS,
            subjects.ALL_LIFECYCLE_EVENTS,
            subjects.ALL_FINETUNE_EVENTS,
        ],
        retention=RetentionPolicy.LIMITS,
        max_age=7 * DAY,
        storage=StorageType.FILE,
        duplicate_window=600,
    ),
    StreamConfig(
        name=subjects.FINGERPRINTS_STREAM,
        subjects=[subjects.ALL_FINGERPRINT_EVENTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=600,
    ),
    StreamConfig(
        name=subjects.DEADLETTER_STREAM,
        subjects=[subjects.ALL_DEADLETTERS],
        retention=RetentionPolicy.LIMITS,
        max_age=30 * DAY,
        storage=StorageType.FILE,
    ),
)

BUCKETS: tuple[KeyValueConfig, ...] = (
    KeyValueConfig(bucket=TENANTS_BUCKET, history=64, storage=StorageType.FILE),
    KeyValueConfig(bucket=TENANT_VERSIONS_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=METERING_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=CREDENTIALS_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=API_KEYS_BUCKET, history=1, storage=StorageType.FILE),
    KeyValueConfig(bucket=FINETUNE_BUCKET, history=1, storage=StorageType.FILE),
)


def stream(name: str) -> JStream:
    """A subscriber-side handle on a stream that ensure_topology has declared."""
    return JStream(name, declare=False)


def pull_inbox(service: str) -> bytes:
    """Inbox prefix for a service's pull subscribers (FastStream defaults them to the
    shared `_INBOX.`, which a service's NATS user may not subscribe to)."""
    return (subjects.service_inbox_prefix(service) + ".").encode()


def durable_config(ack_wait_s: float = 30.0) -> ConsumerConfig:
    return ConsumerConfig(max_deliver=MAX_DELIVER, ack_wait=ack_wait_s)


def make_broker(settings: TenantrySettings, service: str) -> NatsBroker:
    security = None
    if settings.nats_user:
        password = settings.nats_password.get_secret_value() if settings.nats_password else ""
        security = NatsUserPassword(username=settings.nats_user, password=password)
    return NatsBroker(
        [url.strip() for url in settings.nats_url.split(",")],
        name=f"tenantry-{service}",
        security=security,
        # Replies to this service's own requests come only below its own prefix, the
        # one inbox its NATS user may subscribe to (shared.grants).
        inbox_prefix=subjects.service_inbox_prefix(service),
        # FastStream logs every message at INFO; per-message lines are debug noise here.
        log_level=logging.DEBUG,
        logger=logging.getLogger(f"tenantry.{service}.broker"),
        # No dependency injection: every handler takes the message itself (see
        # `whole_message`) and validates its own body with pydantic. FastStream's DI
        # solved the `msg: NatsMessage` parameter on a worker thread for every message,
        # measured at ~15 % of a service's CPU (bench/pipeline.py, py-spy).
        apply_types=False,
        decoder=whole_message,
    )


async def whole_message(message: StreamMessage[Msg]) -> StreamMessage[Msg]:
    """Decoder for every subscriber: the handler receives the FastStream message itself
    (subject, headers, body, ack state), not a decoded body."""
    return message


async def ensure_topology(
    js: JetStreamContext,
    streams: Iterable[str] | None = None,
    buckets: Iterable[str] | None = None,
) -> None:
    """Create or update the named streams and KV buckets (None: all of them). Safe to run
    from every replica at once. A service declares only what it uses (shared.grants):
    its NATS user has JetStream API rights on nothing else."""
    wanted_streams = None if streams is None else set(streams)
    wanted_buckets = None if buckets is None else set(buckets)
    for config in STREAMS:
        if wanted_streams is not None and config.name not in wanted_streams:
            continue
        try:
            await js.stream_info(config.name or "")
            await js.update_stream(config)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:
                # Another replica created it between our look-up and our add.
                await js.update_stream(config)
    for kv in BUCKETS:
        if wanted_buckets is not None and kv.bucket not in wanted_buckets:
            continue
        try:
            await js.key_value(kv.bucket)
        except BucketNotFoundError:
            try:
                await js.create_key_value(kv)
            except BadRequestError:
                await js.key_value(kv.bucket)


def stream_for(subject: str) -> str:
    if subject.endswith(".fingerprints"):
        return subjects.FINGERPRINTS_STREAM
    return subjects.EVENTS_STREAM


async def kv_keys(kv: KeyValue, pattern: str) -> list[str]:
    """Keys matching a subject-style pattern (e.g. "acme.*") that hold a value now.

    The bucket stream's per-subject counts (stream info with a subject filter) name
    every key that has a message; a get then drops the deleted and purged ones. Not a
    watch: nats-py's watch sends its "no more" marker when the consumer has nothing
    *undelivered*, which under load can come before the delivered entries are handed
    over, and a listing cut short left keys behind at offboarding (seen in tests).
    nats-py's keys(filters=...) also matches substrings ("acme" would find "acme-2")."""
    prefix = kv._pre  # "$KV.<bucket>."
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{prefix}{pattern}")
    keys = []
    for subject in sorted(info.state.subjects or {}):
        key = subject[len(prefix) :]
        try:
            await kv.get(key)
        except KeyNotFoundError:  # KeyDeletedError too: a delete or purge marker
            continue
        keys.append(key)
    return keys


async def publish_event(
    target: NatsBroker | NatsClient, event: Envelope, subject: str, stream: str | None = None
) -> None:
    """Durable publish: waits for the JetStream ack; event_id de-duplicates retries.

    Straight through nats-py: FastStream's publish path (middlewares, its own
    serialiser) cost more CPU than the publish itself, several times per request."""
    nc = target.connection if isinstance(target, NatsBroker) else target
    await nc.jetstream().publish(
        subject,
        event.model_dump_json().encode(),
        stream=stream or stream_for(subject),
        headers={"Nats-Msg-Id": event.event_id},
    )


class ServiceCallError(Exception):
    """A service call that got no usable answer. Carries a client-safe ErrorInfo."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


async def call(
    target: NatsBroker | NatsClient,
    subject: str,
    message: BaseModel,
    reply_type: type[R],
    timeout: float,
) -> R:
    """Request/reply to another service, returning its typed reply."""
    service = subject.split(".")[1] if subject.startswith("svc.") else subject
    nc = target.connection if isinstance(target, NatsBroker) else target
    try:
        response = await nc.request(subject, message.model_dump_json().encode(), timeout=timeout)
    except nats.errors.NoRespondersError as exc:
        raise ServiceCallError(
            ErrorInfo(
                code=ErrorCode.UNAVAILABLE,
                message=f"the {service} service is not running",
                retryable=True,
            )
        ) from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise ServiceCallError(
            ErrorInfo(
                code=ErrorCode.UNAVAILABLE,
                message=f"the {service} service did not answer within {timeout:g}s",
                retryable=True,
            )
        ) from exc
    try:
        return reply_type.model_validate_json(response.data)
    except ValidationError as exc:
        raise ServiceCallError(
            ErrorInfo(code=ErrorCode.INTERNAL, message=f"the {service} service answered badly")
        ) from exc


async def next_reply(queue: asyncio.Queue[Msg], timeout_s: float, who: str) -> Msg:
    """The next message of a multi-message reply (a stream), collected on an inbox by
    the caller: a wait that runs out, or nats-server's no-responders status, is the
    same client-safe UNAVAILABLE error `call` gives."""
    try:
        msg = await asyncio.wait_for(queue.get(), timeout_s)
    except TimeoutError:
        raise ServiceCallError(
            ErrorInfo(
                code=ErrorCode.UNAVAILABLE,
                message=f"{who} sent nothing for {timeout_s:g}s",
                retryable=True,
            )
        ) from None
    if msg.headers and msg.headers.get("Status") == "503":  # no responders
        raise ServiceCallError(
            ErrorInfo(code=ErrorCode.UNAVAILABLE, message=f"{who} is not running", retryable=True)
        )
    return msg
