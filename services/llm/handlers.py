"""llm's subscriber: a thin wrapper over invocation.invoke, with its audit events."""

from __future__ import annotations

import time
from dataclasses import dataclass

from faststream.nats import NatsRouter

from services.llm import invocation
from services.llm.finetuned import FineTunedModels, is_finetuned
from services.llm.providers import ModelProvider, UpstreamError
from shared.audit import AuditTrail
from shared.messages.audit import AuditEventType, AuditStatus
from shared.messages.llm import InvokeModel, ModelInvoked
from shared.service import error_reply, reply_ok, rpc

SERVICE = "llm"


@dataclass
class Deps:
    trail: AuditTrail
    provider: ModelProvider | None = None  # opened at service start
    finetuned: FineTunedModels | None = None  # tenants' own fine-tuned models, at start

    def model_provider(self) -> ModelProvider:
        if self.provider is None:
            raise RuntimeError("llm provider used before the service started")
        return self.provider


def build_router(deps: Deps) -> NatsRouter:
    router = NatsRouter()

    @rpc(router, SERVICE, "invoke", InvokeModel, ModelInvoked, deps.trail)
    async def invoke(msg: InvokeModel) -> ModelInvoked:
        provider = deps.model_provider()
        started = time.perf_counter()
        try:
            if is_finetuned(msg.model) and deps.finetuned is not None:
                invocation.check_allowed(msg)
                done = await deps.finetuned.complete(msg)
            else:
                done = await invocation.invoke(provider, msg)
        except invocation.ModelNotAllowed as exc:
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.ACCESS_DENIED,
                action="model.invoke",
                status=AuditStatus.FAILURE,
                resource_type="model",
                resource_id=msg.model,
                error=exc.info.message,
            )
            return error_reply(ModelInvoked, msg.tenant_id, msg.request_id, exc.info)
        except UpstreamError as exc:
            await deps.trail.record(
                tenant_id=msg.tenant_id,
                request_id=msg.request_id,
                event_type=AuditEventType.API_CALL,
                action="model.invoke",
                status=AuditStatus.FAILURE,
                resource_type="model",
                resource_id=msg.model,
                error=exc.info.message,
                details={
                    "provider": provider.name,
                    "http_status": exc.status,
                    "retryable": exc.info.retryable,
                    "latency_ms": round((time.perf_counter() - started) * 1000),
                },
            )
            return error_reply(ModelInvoked, msg.tenant_id, msg.request_id, exc.info)
        # Counts and names only: the prompt and the answer never go into the audit row.
        await deps.trail.record(
            tenant_id=msg.tenant_id,
            request_id=msg.request_id,
            event_type=AuditEventType.API_CALL,
            action="model.invoke",
            resource_type="model",
            resource_id=msg.model,
            details={
                "provider": done.provider,
                "model": done.model,
                "input_tokens": done.usage.input_tokens,
                "output_tokens": done.usage.output_tokens,
                "cache_read_input_tokens": done.usage.cache_read_input_tokens,
                "cache_creation_input_tokens": done.usage.cache_creation_input_tokens,
                "stop_reason": done.stop_reason,
                "latency_ms": round((time.perf_counter() - started) * 1000),
            },
        )
        return reply_ok(
            ModelInvoked,
            msg,
            model=done.model,
            provider=done.provider,
            text=done.text,
            usage=done.usage,
            stop_reason=done.stop_reason,
        )

    return router
