"""AsyncAPI 3.0 document of every NATS subject the platform uses, with payload schemas
taken from the pydantic models themselves.

    python -m shared.asyncapi [OUT.json]      # or: make asyncapi (writes asyncapi.json)

Subscribed subjects are not listed by hand: each service is built (nothing is
connected) and its subscribers are read, with the models its handler table declared for
them (shared.payloads.declare_payload: the request and reply of an rpc verb, the one
message of any other subscriber; the same declaration gives FastStream's own generated
schema the real payloads). CATALOGUE below describes the rest (the tenants' own
subjects, JetStream events, health) and overrides a discovered subject's entry; a
subscribed subject with no declared model and no CATALOGUE entry is listed as
UNDOCUMENTED, and a test fails until one of them describes it.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import subjects
from shared.messages.audit import AuditRecorded
from shared.messages.completions import (
    CancelCompletion,
    CompletionDelta,
    CompletionPublished,
    CreateCompletion,
)
from shared.messages.finetune import FineTuneChanged
from shared.messages.leakage import FingerprintsChanged
from shared.messages.lifecycle import TenantOffboarded, TenantOnboarded
from shared.messages.llm import CancelModelCall, InvokeModel, ModelStreamed
from shared.messages.metering import BudgetAlerted, CostRecorded
from shared.messages.retrieval import DocumentsIngested, IngestDocuments
from shared.tenant_directory import ListTenants, TenantsListed, directory_subject

PARAMETERS = {
    "tenant_id": "The tenant's id (validated: lower-case letters, digits, inner hyphens).",
    "request_id": "The request's correlation id.",
    "rest": "Any further tokens.",
}


@dataclass
class Channel:
    pattern: str  # NATS wildcard form, e.g. svc.retrieval.search.*
    description: str
    messages: list[type[BaseModel]] = field(default_factory=list)
    replies: list[type[BaseModel]] = field(default_factory=list)
    # (operation id, action from the platform's side, which service)
    operations: list[tuple[str, str, str]] = field(default_factory=list)
    raw: bool = False  # payload is not a Tenantry model (health, dead letters)


CATALOGUE: list[Channel] = [
    Channel(
        subjects.ALL_REQUESTS,
        "A tenant's durable completion request; the gateway acks it and queues it.",
        [CreateCompletion],
        operations=[("gateway.acceptRequest", "receive", "gateway")],
    ),
    Channel(
        subjects.ALL_SYNC_REQUESTS,
        "A tenant's request/reply completion; the reply is the completion.",
        [CreateCompletion],
        [CompletionPublished],
        [("gateway.answerRequest", "receive", "gateway")],
    ),
    Channel(
        subjects.ALL_STREAM_REQUESTS,
        "A tenant's streamed request: on the reply inbox, scanned answer text as "
        "CompletionDelta messages as the model produces it, then the completion.",
        [CreateCompletion],
        [CompletionDelta, CompletionPublished],
        [("gateway.streamRequest", "receive", "gateway")],
    ),
    Channel(
        subjects.ALL_CANCELS,
        "Stop one of the tenant's streamed requests (every gateway listens; no reply).",
        [CancelCompletion],
        operations=[("gateway.cancelStream", "receive", "gateway")],
    ),
    Channel(
        subjects.service_all("llm", "stream"),
        "One model call streamed: ModelStreamed deltas on the caller's inbox, then a final "
        "event with the usage.",
        [InvokeModel],
        [ModelStreamed],
        [("llm.streamModel", "receive", "llm")],
    ),
    Channel(
        subjects.service_all("llm", "cancel"),
        "Stop a streamed model call (every llm replica listens; the usage so far is "
        "reported in the call's final event).",
        [CancelModelCall],
        operations=[("llm.cancelModel", "receive", "llm")],
    ),
    Channel(
        directory_subject(),
        "Ops' list of every registered tenant (promptconfig), a page at a time; not "
        "tenant-scoped, answered on platform inboxes only.",
        [ListTenants],
        [TenantsListed],
        [("promptconfig.listTenants", "receive", "promptconfig")],
    ),
    Channel(
        subjects.ALL_INGESTS,
        "A tenant's documents to chunk, embed and store (forwarded to retrieval).",
        [IngestDocuments],
        [DocumentsIngested],
        [("gateway.ingest", "receive", "gateway")],
    ),
    Channel(
        subjects.ALL_QUEUED_REQUESTS,
        "Durable requests queued by the gateway intake (JetStream TENANTRY_REQUESTS).",
        [CreateCompletion],
        operations=[
            ("gateway.queueRequest", "send", "gateway"),
            ("gateway.workRequest", "receive", "gateway"),
        ],
    ),
    Channel(
        subjects.ALL_COMPLETIONS,
        "The completion of a durable request (JetStream TENANTRY_COMPLETIONS, kept 1 day).",
        [CompletionPublished],
        operations=[("gateway.publishCompletion", "send", "gateway")],
    ),
    Channel(
        subjects.ALL_AUDIT_EVENTS,
        "Audit events from every service (JetStream TENANTRY_EVENTS); audit stores them.",
        [AuditRecorded],
        operations=[
            ("services.recordAudit", "send", "*"),
            ("audit.storeAudit", "receive", "audit"),
        ],
    ),
    Channel(
        subjects.ALL_COST_EVENTS,
        "The priced cost of one model call (metering); audit stores it.",
        [CostRecorded],
        operations=[
            ("metering.recordCost", "send", "metering"),
            ("audit.storeCost", "receive", "audit"),
        ],
    ),
    Channel(
        subjects.ALL_BUDGET_EVENTS,
        "A budget threshold (50/80/100 %) crossed.",
        [BudgetAlerted],
        operations=[("metering.alertBudget", "send", "metering")],
    ),
    Channel(
        subjects.ALL_LIFECYCLE_EVENTS,
        "A tenant onboarded or offboarded (for a mailer or billing system).",
        [TenantOnboarded, TenantOffboarded],
        operations=[("promptconfig.announceLifecycle", "send", "promptconfig")],
    ),
    Channel(
        subjects.ALL_FINGERPRINT_EVENTS,
        "Content fingerprints of a tenant's stored chunks (JetStream TENANTRY_FINGERPRINTS).",
        [FingerprintsChanged],
        operations=[
            ("retrieval.publishFingerprints", "send", "retrieval"),
            ("leakage.followFingerprints", "receive", "leakage"),
        ],
    ),
    Channel(
        subjects.ALL_FINETUNE_EVENTS,
        "A fine-tuning job changed state.",
        [FineTuneChanged],
        operations=[("finetune.announceJob", "send", "finetune")],
    ),
    Channel(
        subjects.ALL_CONFIG_EVENTS,
        "Captured by TENANTRY_EVENTS for config-change events; nothing publishes here yet "
        "(config changes are audit rows and KV watch updates).",
        [],
        raw=True,
    ),
    Channel(
        subjects.ALL_DEADLETTERS,
        "Messages delivered the maximum number of times, copied by audit with their "
        "original headers (JetStream TENANTRY_DEADLETTER).",
        [],
        operations=[("audit.deadLetter", "send", "audit")],
        raw=True,
    ),
    Channel(
        subjects.MAX_DELIVERIES_ADVISORY,
        "nats-server's advisory that a message reached its maximum deliveries.",
        [],
        operations=[("audit.watchMaxDeliveries", "receive", "audit")],
        raw=True,
    ),
]


def health_channel(service: str) -> Channel:
    return Channel(
        subjects.health(service),
        f"Liveness over the bus: every {service} replica answers with its name.",
        [],
        operations=[(f"{service}.health", "receive", service)],
        raw=True,
    )


def declared_models(subscriber: Any) -> tuple[type[BaseModel], ...]:
    """What shared.payloads.declare_payload recorded on this subscriber's handler: the
    request and reply models of an rpc verb, the one model of any other subscriber."""
    for call in getattr(subscriber, "calls", []):
        fn = getattr(call.handler, "_original_call", call.handler)
        models: tuple[type[BaseModel], ...] = getattr(fn, "tenantry_models", ())
        if models:
            return models
    return ()


def subscribed(services: tuple[str, ...]) -> dict[str, list[tuple[str, Any]]]:
    """Subject pattern -> [(service, subscriber)] of every service's broker (unconnected)."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for name in services:
        app = importlib.import_module(f"services.{name}.app")
        service = app.make_service()
        for subscriber in service.broker.subscribers:
            subject = subscriber.subject
            # FastStream keeps the declared subject on an Address object.
            pattern = str(getattr(subject, "template", subject))
            found.setdefault(pattern, []).append((name, subscriber))
    return found


def channels(services: tuple[str, ...]) -> list[Channel]:
    result = [health_channel(s) for s in services]
    listed = {c.pattern for c in CATALOGUE}
    for pattern, users in sorted(subscribed(services).items()):
        if pattern in listed:
            continue
        for service, subscriber in users:
            models = declared_models(subscriber)
            if not models:
                # Listed, so the document still names every subject; the test fails on it
                # until CATALOGUE says what travels there.
                result.append(
                    Channel(
                        pattern,
                        f"UNDOCUMENTED: {service} subscribes here; add it to "
                        "shared.asyncapi.CATALOGUE with its message models.",
                        operations=[(f"{service}.{_key(pattern)}", "receive", service)],
                        raw=True,
                    )
                )
                continue
            if len(models) == 1:
                # A subscriber that answers for itself (an event, a stream): its model's
                # own summary says what it is.
                summary = (models[0].__doc__ or models[0].__name__).strip().split("\n")[0]
                result.append(
                    Channel(
                        pattern,
                        f"{service}: {summary}",
                        [models[0]],
                        operations=[(f"{service}.{_key(pattern)}", "receive", service)],
                    )
                )
                continue
            verb = pattern.split(".")[2]
            result.append(
                Channel(
                    pattern,
                    f"{service}: {verb} (request/reply, queue group `{service}`).",
                    [models[0]],
                    [models[1]],
                    [(f"{service}.{verb}", "receive", service)],
                )
            )
    return [*result, *CATALOGUE]


def address(pattern: str) -> tuple[str, list[str]]:
    """NATS wildcards to AsyncAPI parameters: tenant.*.completion.> -> ...{request_id}."""
    tokens, params = [], []
    for position, part in enumerate(pattern.split(".")):
        if part == "*":
            name = "tenant_id"
            tokens.append("{tenant_id}")
        elif part == ">":
            name = "request_id" if "completion" in pattern else "rest"
            tokens.append("{" + name + "}")
        else:
            tokens.append(part)
            continue
        if name in params:
            raise ValueError(f"{pattern}: two wildcards map to {name} (position {position})")
        params.append(name)
    return ".".join(tokens), params


def _key(pattern: str) -> str:
    return pattern.replace("$", "").replace(".*", "").replace(".>", "").replace(".", "-")


def document(services: tuple[str, ...] | None = None, version: str = "0.1.0") -> dict[str, Any]:
    if services is None:
        from shared.launcher import SERVICES

        services = SERVICES
    chans = channels(services)
    models = sorted({m for c in chans for m in (*c.messages, *c.replies)}, key=lambda m: m.__name__)
    _, schema = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    out: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Tenantry",
            "version": version,
            "description": "Every NATS subject of the platform. Tenant-scoped subjects carry "
            "the tenant id as a token; a tenant's NATS user may use only its own.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "nats:4222", "protocol": "nats"}},
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": schema.get("$defs", {})},
    }
    for model in models:
        out["components"]["messages"][model.__name__] = {
            "name": model.__name__,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().split("\n")[0],
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
    for chan in chans:
        key = _key(chan.pattern)
        text, params = address(chan.pattern)
        messages = {
            m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in chan.messages
        }
        replies = {
            m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in chan.replies
        }
        body: dict[str, Any] = {
            "address": text,
            "description": chan.description,
            "messages": {**messages, **{f"{k}Reply": v for k, v in replies.items()}},
        }
        if params:
            body["parameters"] = {p: {"description": PARAMETERS[p]} for p in params}
        if chan.raw:
            body["x-tenantry-payload"] = "not a Tenantry message (bytes or another message)"
        out["channels"][key] = body
        for op_id, action, service in chan.operations:
            operation: dict[str, Any] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{key}"},
                "x-tenantry-service": service,
                "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in messages],
            }
            if replies:
                operation["reply"] = {
                    "messages": [{"$ref": f"#/channels/{key}/messages/{m}Reply"} for m in replies],
                }
            out["operations"][op_id] = operation
    return out


def main(argv: list[str]) -> int:
    text = json.dumps(document(), indent=2, sort_keys=False) + "\n"
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


def undocumented(doc: dict[str, Any]) -> list[str]:
    """Addresses of channels a service subscribes to that CATALOGUE does not describe."""
    return sorted(
        c["address"] for c in doc["channels"].values() if c["description"].startswith("UNDOC")
    )
