"""Every NATS subject is built here, from a validated tenant id.

Layout (the tenant id is always its own token, so permissions, partitioning and
audit can all key on it):

  tenant.<tid>.request                 client -> gateway intake, which queues it durably
  intake.<tid>.request                 gateway intake -> JetStream -> gateway workers
  tenant.<tid>.request.sync            client -> gateway, core request/reply
  tenant.<tid>.request.stream          client -> gateway, deltas then the completion
  tenant.<tid>.request.cancel          client -> every gateway: stop a streamed request
  tenant.<tid>.completion.<request_id> gateway -> client, JetStream (kept 1 day)
  tenant.<tid>.ingest                  client -> gateway, request/reply
  svc.<service>.<verb>.<tid>           service <-> service, request/reply
  evt.<tid>.<kind>                     events (audit, cost, config), JetStream
"""

from __future__ import annotations

import re

from shared.tenancy import UNATTRIBUTED, validate_tenant_id

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Stream names and the subjects they capture (wildcards, so they live beside the builders).
REQUESTS_STREAM = "TENANTRY_REQUESTS"
COMPLETIONS_STREAM = "TENANTRY_COMPLETIONS"
EVENTS_STREAM = "TENANTRY_EVENTS"
# Content fingerprints are state, not a log: kept until withdrawn, never aged out, so a
# leakage replica that starts later still learns every document ingested before.
FINGERPRINTS_STREAM = "TENANTRY_FINGERPRINTS"
DEADLETTER_STREAM = "TENANTRY_DEADLETTER"

ALL_REQUESTS = "tenant.*.request"
# What the request stream captures. Never a subject a tenant may publish on: JetStream
# acknowledges every captured publish to the publisher's reply subject, whatever it is,
# so a stream on a tenant subject would let a tenant make the server write into another
# tenant's completions or into any stream. The gateway queues requests here instead.
ALL_QUEUED_REQUESTS = "intake.*.request"
ALL_COMPLETIONS = "tenant.*.completion.>"
ALL_SYNC_REQUESTS = "tenant.*.request.sync"
ALL_STREAM_REQUESTS = "tenant.*.request.stream"
ALL_CANCELS = "tenant.*.request.cancel"
ALL_INGESTS = "tenant.*.ingest"
ALL_EVENTS = "evt.>"
ALL_BUDGET_EVENTS = "evt.*.budget"
ALL_LIFECYCLE_EVENTS = "evt.*.lifecycle"
ALL_AUDIT_EVENTS = "evt.*.audit"
ALL_COST_EVENTS = "evt.*.cost"
ALL_CONFIG_EVENTS = "evt.*.config"
ALL_FINGERPRINT_EVENTS = "evt.*.fingerprints"
DEADLETTER_PREFIX = "deadletter"
ALL_DEADLETTERS = "deadletter.>"
TENANT_INBOX_ROOT = "_TINBOX"
PLATFORM_INBOX_ROOT = "_INBOX"  # services and ops; never open to a tenant
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"


def token(value: str) -> str:
    """Validate a non-tenant subject token (request ids, verbs)."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"not a safe subject token: {value[:70]!r}")
    return value


def request(tenant_id: str) -> str:
    return f"tenant.{validate_tenant_id(tenant_id)}.request"


def request_sync(tenant_id: str) -> str:
    return f"tenant.{validate_tenant_id(tenant_id)}.request.sync"


def request_stream(tenant_id: str) -> str:
    """Streamed request/reply: answer deltas, then the completion, on the reply inbox."""
    return f"tenant.{validate_tenant_id(tenant_id)}.request.stream"


def request_cancel(tenant_id: str) -> str:
    """Stop one of the tenant's streamed requests (every gateway listens)."""
    return f"tenant.{validate_tenant_id(tenant_id)}.request.cancel"


def queued_request_for_token(raw_tenant_token: str) -> str:
    """Where the gateway queues a durable request that arrived on tenant.<token>.request
    (validation happens when it is worked, so a bad id still gets its error completion)."""
    return f"intake.{_single_token(raw_tenant_token)}.request"


def completion(tenant_id: str, request_id: str) -> str:
    return f"tenant.{validate_tenant_id(tenant_id)}.completion.{token(request_id)}"


def completion_for_token(raw_tenant_token: str, request_id: str) -> str:
    """Reply on the same tenant token a request arrived on, even if it failed validation
    (so the sender still reads its error). The token came from a subject, but check it."""
    return f"tenant.{_single_token(raw_tenant_token)}.completion.{token(request_id)}"


def _single_token(raw: str) -> str:
    if not raw or any(c in raw for c in ".*> \t\r\n"):
        raise ValueError("not a single subject token")
    return raw


def tenant_inbox_prefix(tenant_id: str) -> str:
    """Reply inboxes of a tenant's clients: its credentials may subscribe only below this,
    so no tenant can read another's replies (the shared _INBOX.> is not open to tenants)."""
    return f"{TENANT_INBOX_ROOT}.{validate_tenant_id(tenant_id)}"


def tenant_reply_prefix(raw_tenant_token: str) -> str:
    """The only reply subjects the platform answers a message on tenant.<token>.… to."""
    return f"{TENANT_INBOX_ROOT}.{_single_token(raw_tenant_token)}."


def service_inbox_prefix(service_name: str) -> str:
    """Each service's own reply inboxes (its NATS user may subscribe only below this)."""
    return f"{PLATFORM_INBOX_ROOT}.{token(service_name)}"


def completions(tenant_id: str) -> str:
    """Wildcard over one tenant's completions, for a client subscribing to all of them."""
    return f"tenant.{validate_tenant_id(tenant_id)}.completion.>"


def ingest(tenant_id: str) -> str:
    return f"tenant.{validate_tenant_id(tenant_id)}.ingest"


def service(service_name: str, verb: str, tenant_id: str) -> str:
    return f"svc.{token(service_name)}.{token(verb)}.{validate_tenant_id(tenant_id)}"


def service_all(service_name: str, verb: str) -> str:
    """What a service subscribes to: its verb for every tenant."""
    return f"svc.{token(service_name)}.{token(verb)}.*"


def health(service_name: str) -> str:
    """Not tenant-scoped: answered by every replica of a service once it is serving."""
    return f"svc.{token(service_name)}.health"


def event(tenant_id: str, kind: str) -> str:
    # UNATTRIBUTED events (bad ids) are the one exception to validation; see tenancy.
    tid = tenant_id if tenant_id == UNATTRIBUTED else validate_tenant_id(tenant_id)
    return f"evt.{tid}.{token(kind)}"


def audit_event(tenant_id: str) -> str:
    return event(tenant_id, "audit")


def cost_event(tenant_id: str) -> str:
    return event(tenant_id, "cost")


def budget_event(tenant_id: str) -> str:
    return event(tenant_id, "budget")


def lifecycle_event(tenant_id: str) -> str:
    return event(tenant_id, "lifecycle")


def fingerprints_event(tenant_id: str) -> str:
    """retrieval -> leakage: content fingerprints of a tenant's documents."""
    return event(tenant_id, "fingerprints")


def deadletter(stream: str, consumer: str) -> str:
    return f"{DEADLETTER_PREFIX}.{token(stream)}.{token(consumer)}"


def tenant_from_subject(subject: str, position: int) -> str:
    """The raw tenant token of a received subject (not yet validated)."""
    parts = subject.split(".")
    return parts[position] if len(parts) > position else ""


ALL_FINETUNE_EVENTS = "evt.*.finetune"


def finetune_event(tenant_id: str) -> str:
    """finetune -> anyone: a tenant's fine-tuning job changed state (durable)."""
    return event(tenant_id, "finetune")
