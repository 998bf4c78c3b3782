"""llm's composition root: the model provider and the tenants' fine-tuned models."""

from __future__ import annotations

import openai
from faststream.nats import NatsBroker

from services.llm.adapters import AnthropicProvider
from services.llm.finetuned import FineTunedModels
from services.llm.handlers import HANDLERS, SERVICE, Deps
from services.llm.offline import OfflineProvider
from services.llm.providers import ModelProvider
from services.llm.remote import RemoteModels
from services.llm.settings import LlmSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.logging import get_logger
from shared.service import Service, compose

log = get_logger("tenantry.llm")


def make_provider(settings: LlmSettings) -> ModelProvider:
    """A key selects the real Anthropic API; no key, the offline extractive provider."""
    if settings.anthropic_api_key is not None:
        return AnthropicProvider.from_settings(settings)
    return OfflineProvider()


def remote_models(settings: LlmSettings) -> RemoteModels | None:
    """Fine-tuned models held by an OpenAI-compatible provider, when llm has its key."""
    if settings.openai_api_key is None:
        return None
    client = openai.AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout=settings.anthropic_timeout_s,
        max_retries=settings.anthropic_max_retries,
    )
    return RemoteModels(client)


async def bootstrap(
    settings: LlmSettings, broker: NatsBroker, *, provider: ModelProvider | None = None
) -> Deps:
    """Open the model provider (unless one is passed in) and the fine-tuned models (on a
    connected broker), and return llm's Deps."""
    owns_provider = provider is None
    provider = provider if provider is not None else make_provider(settings)
    finetuned = FineTunedModels(broker.connection.jetstream(), remote_models(settings))
    log.info(
        "llm.provider",
        provider=provider.name,
        custom_endpoint=settings.anthropic_base_url is not None,
    )
    return Deps(
        trail=AuditTrail(broker, SERVICE),
        provider=provider,
        finetuned=finetuned,
        owns_provider=owns_provider,
    )


def make_service(
    settings: LlmSettings | None = None, *, provider: ModelProvider | None = None
) -> Service:
    settings = settings or LlmSettings()
    broker = make_broker(settings, SERVICE)
    return compose(
        SERVICE, settings, broker, HANDLERS, lambda: bootstrap(settings, broker, provider=provider)
    )
