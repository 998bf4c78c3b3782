"""What each service may do on the bus: the one table its NATS user's permissions and
its start-up topology are both built from.

Least privilege: a service may publish and subscribe only to what it uses, and gets
JetStream API and KV rights only on the streams and buckets it uses. A service that
serves requests may publish on the platform's inboxes (`_INBOX.>`; the gateway also on
tenants' `_TINBOX.>`): nats-server's narrower `allow_responses` was tried and dropped,
because every reload of the users file (each onboarding, offboarding and credential
change) forgets which replies are owed, and in-flight replies were refused (seen in
tests/e2e). Which reply a service actually sends is decided by shared.replies: only the
sender's own inbox. `tests/e2e` runs the platform under these permissions and fails on any
permission violation nats-server logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import subjects

# KV buckets owned by one service's own module (the rest are in shared.bus).
AUDIT_HEADS_BUCKET = "tenantry-audit-heads"
AUDIT_WRITER_BUCKET = "tenantry-audit-writer"


@dataclass(frozen=True)
class Consumer:
    stream: str
    durable: str


@dataclass(frozen=True)
class Grant:
    """One service's needs. Subjects may use NATS wildcards."""

    publishes: tuple[str, ...] = ()  # core and JetStream-captured subjects it publishes on
    calls: tuple[str, ...] = ()  # request/reply verbs of other services it calls
    subscribes: tuple[str, ...] = ()  # beyond its own svc.<name>.> and inbox
    streams: tuple[str, ...] = ()  # streams it declares at start (create/update/info)
    consumers: tuple[Consumer, ...] = ()  # durable pull consumers it works
    watches: tuple[str, ...] = ()  # streams it reads with ordered consumers
    reads_messages: tuple[str, ...] = ()  # streams it reads single messages of by sequence
    buckets: tuple[str, ...] = ()  # KV buckets it reads and writes (and may create)
    reads_buckets: tuple[str, ...] = ()  # KV buckets it only reads and watches


def _svc(service: str, *verbs: str) -> tuple[str, ...]:
    return tuple(subjects.service_all(service, verb) for verb in verbs)


_AUDITS = (subjects.ALL_AUDIT_EVENTS,)  # every service writes its own audit rows
_FT_FILES = "OBJ_tenantry-finetune-files"  # finetune's object store (shared.finetune_store)
# nats-py's object store get() looks its stream up by subject (names only, no content).
_STREAM_NAMES = "$JS.API.STREAM.NAMES"

GRANTS: dict[str, Grant] = {
    "access": Grant(
        publishes=_AUDITS,
        streams=(subjects.EVENTS_STREAM,),
        buckets=("tenantry-credentials", "tenantry-api-keys"),
    ),
    "promptconfig": Grant(
        publishes=(*_AUDITS, subjects.ALL_LIFECYCLE_EVENTS, subjects.ALL_CONFIG_EVENTS),
        calls=(
            *_svc("access", "issue", "revoke"),
            *_svc("metering", "provision", "deprovision"),
            *_svc("retrieval", "provision", "deprovision"),
            *_svc("finetune", "deprovision"),  # offboarding removes jobs, data, models
        ),
        streams=(subjects.EVENTS_STREAM,),
        buckets=("tenantry-tenants", "tenantry-tenant-versions"),
    ),
    "audit": Grant(
        publishes=(*_AUDITS, subjects.ALL_DEADLETTERS),
        subscribes=(subjects.MAX_DELIVERIES_ADVISORY,),
        streams=(subjects.EVENTS_STREAM, subjects.DEADLETTER_STREAM),
        consumers=(
            Consumer(subjects.EVENTS_STREAM, "audit-audit-events"),
            Consumer(subjects.EVENTS_STREAM, "audit-cost-events"),
        ),
        # A message that ran out of deliveries is copied to the dead letters by sequence.
        reads_messages=(subjects.REQUESTS_STREAM, subjects.EVENTS_STREAM),
        buckets=(AUDIT_HEADS_BUCKET, AUDIT_WRITER_BUCKET),
        reads_buckets=("tenantry-tenants",),
    ),
    "metering": Grant(
        publishes=(*_AUDITS, subjects.ALL_COST_EVENTS, subjects.ALL_BUDGET_EVENTS),
        streams=(subjects.EVENTS_STREAM,),
        buckets=("tenantry-metering",),
    ),
    "retrieval": Grant(
        publishes=(*_AUDITS, subjects.ALL_FINGERPRINT_EVENTS),
        streams=(subjects.EVENTS_STREAM, subjects.FINGERPRINTS_STREAM),
    ),
    "leakage": Grant(
        publishes=_AUDITS,
        streams=(subjects.EVENTS_STREAM, subjects.FINGERPRINTS_STREAM),
        watches=(subjects.FINGERPRINTS_STREAM,),
        reads_buckets=("tenantry-tenants",),
    ),
    "llm": Grant(
        # Tenants' fine-tuned models: their registrations (KV) and weights (object store).
        publishes=(*_AUDITS, f"$JS.API.STREAM.INFO.{_FT_FILES}", _STREAM_NAMES),
        streams=(subjects.EVENTS_STREAM,),
        reads_messages=(_FT_FILES,),
        watches=(_FT_FILES,),
        reads_buckets=("tenantry-finetune",),
    ),
    "finetune": Grant(
        publishes=(
            *_AUDITS,
            subjects.ALL_FINETUNE_EVENTS,
            "$O.tenantry-finetune-files.>",  # training files and model weights
            f"$JS.API.STREAM.PURGE.{_FT_FILES}",  # deleting an object purges its chunks
            _STREAM_NAMES,
        ),
        calls=(
            *_svc("promptconfig", "resolve", "upsert"),  # tier; the model on the allow-list
            *_svc("leakage", "scan"),  # training data, before it is stored
            *_svc("metering", "authorize", "settle"),  # training cost
        ),
        streams=(subjects.EVENTS_STREAM, _FT_FILES),
        reads_messages=(_FT_FILES,),
        watches=(_FT_FILES,),
        buckets=("tenantry-finetune",),
    ),
    "api": Grant(
        # The HTTP door speaks for the tenant its API key belongs to, on that tenant's own
        # client subject, and reads the answer in that tenant's inbox.
        publishes=(
            *_AUDITS,
            subjects.ALL_SYNC_REQUESTS,
            subjects.ALL_STREAM_REQUESTS,
            subjects.ALL_CANCELS,  # a client that hangs up stops its stream
        ),
        calls=_svc("promptconfig", "resolve"),  # GET /v1/models: the tenant's models
        subscribes=(subjects.TENANT_INBOX_ROOT + ".*.>",),
        streams=(subjects.EVENTS_STREAM,),
        reads_buckets=("tenantry-api-keys",),
    ),
    "gateway": Grant(
        publishes=(
            *_AUDITS,
            subjects.ALL_QUEUED_REQUESTS,
            subjects.ALL_COMPLETIONS,
            subjects.TENANT_INBOX_ROOT + ".>",  # answers to tenants' sync requests
        ),
        calls=(
            *_svc("promptconfig", "resolve"),
            *_svc("metering", "authorize", "settle"),
            *_svc("retrieval", "search", "ingest"),
            *_svc("leakage", "scan"),
            *_svc("llm", "invoke", "stream", "cancel"),
        ),
        # The client-facing subjects (answered only on the tenant's own inbox).
        subscribes=(
            subjects.ALL_REQUESTS,
            subjects.ALL_SYNC_REQUESTS,
            subjects.ALL_STREAM_REQUESTS,
            subjects.ALL_CANCELS,
            subjects.ALL_INGESTS,
        ),
        streams=(
            subjects.REQUESTS_STREAM,
            subjects.COMPLETIONS_STREAM,
            subjects.EVENTS_STREAM,
        ),
        consumers=(Consumer(subjects.REQUESTS_STREAM, "gateway"),),
        reads_buckets=("tenantry-tenants",),
    ),
}


def grant_for(service: str) -> Grant:
    try:
        return GRANTS[service]
    except KeyError:
        raise KeyError(
            f"service {service!r} has no entry in shared.grants.GRANTS: "
            "list what it publishes and subscribes there"
        ) from None


def _kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def publish_permissions(service: str) -> list[str]:
    g = grant_for(service)
    api = "$JS.API"
    # Every service answers requests (its verbs, health) on platform inboxes.
    allow: list[str] = [subjects.PLATFORM_INBOX_ROOT + ".>", *g.publishes, *g.calls]
    for name in g.streams:
        allow += [f"{api}.STREAM.INFO.{name}", f"{api}.STREAM.CREATE.{name}"]
        allow += [f"{api}.STREAM.UPDATE.{name}"]
    for c in g.consumers:
        allow += [
            f"{api}.CONSUMER.CREATE.{c.stream}.{c.durable}.>",
            f"{api}.CONSUMER.CREATE.{c.stream}.{c.durable}",
            f"{api}.CONSUMER.DURABLE.CREATE.{c.stream}.{c.durable}",
            f"{api}.CONSUMER.INFO.{c.stream}.{c.durable}",
            f"{api}.CONSUMER.MSG.NEXT.{c.stream}.{c.durable}",
            f"$JS.ACK.{c.stream}.{c.durable}.>",
        ]
    for name in g.reads_messages:
        allow += [f"{api}.STREAM.MSG.GET.{name}", f"{api}.DIRECT.GET.{name}.>"]
        allow += [f"{api}.DIRECT.GET.{name}"]
    for name in g.watches:
        allow += _ordered_consumer(name)
    for bucket in g.buckets:
        stream = _kv_stream(bucket)
        allow += [f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.CREATE.{stream}"]
        allow += [*_kv_read(bucket), f"$KV.{bucket}.>"]
    for bucket in g.reads_buckets:
        # Create too: whichever service starts first makes the bucket (same config).
        stream = _kv_stream(bucket)
        allow += [f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.CREATE.{stream}"]
        allow += _kv_read(bucket)
    return allow


def _ordered_consumer(stream: str) -> list[str]:
    # Ephemeral consumers are named by the server or client: any name, this stream only.
    api = "$JS.API"
    return [
        f"{api}.CONSUMER.CREATE.{stream}",
        f"{api}.CONSUMER.CREATE.{stream}.>",
        f"{api}.CONSUMER.INFO.{stream}.*",
        f"{api}.CONSUMER.DELETE.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def _kv_read(bucket: str) -> list[str]:
    stream = _kv_stream(bucket)
    api = "$JS.API"
    return [
        f"{api}.STREAM.MSG.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
        *_ordered_consumer(stream),  # watch, keys
    ]


def subscribe_permissions(service: str) -> list[str]:
    g = grant_for(service)
    own = [f"svc.{subjects.token(service)}.>", subjects.service_inbox_prefix(service) + ".>"]
    return [*own, *g.subscribes]
