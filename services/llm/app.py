"""llm's bootstrap: settings, broker, the model provider (opened at start), router."""

from __future__ import annotations

import openai

from services.llm.adapters import AnthropicProvider
from services.llm.finetuned import FineTunedModels
from services.llm.handlers import SERVICE, Deps, build_router
from services.llm.offline import OfflineProvider
from services.llm.providers import ModelProvider
from services.llm.remote import RemoteModels
from services.llm.settings import LlmSettings
from shared.audit import AuditTrail
from shared.bus import make_broker
from shared.logging import get_logger
from shared.service import Service

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


def bootstrap(
    settings: LlmSettings | None = None, *, provider: ModelProvider | None = None
) -> Service:
    settings = settings or LlmSettings()
    broker = make_broker(settings, SERVICE)
    deps = Deps(trail=AuditTrail(broker, SERVICE), provider=provider)
    service = Service(SERVICE, settings, broker)
    owned = provider is None

    async def open_provider() -> None:
        # One client (and its HTTP connection pool) for the life of the service.
        if deps.provider is None:
            deps.provider = make_provider(settings)
        deps.finetuned = FineTunedModels(broker.connection.jetstream(), remote_models(settings))
        log.info(
            "llm.provider",
            provider=deps.provider.name,
            custom_endpoint=settings.anthropic_base_url is not None,
        )

    async def close_provider() -> None:
        if owned and deps.provider is not None:
            await deps.provider.close()
            deps.provider = None
        if deps.finetuned is not None:
            await deps.finetuned.close()

    service.on_start.append(open_provider)
    service.on_stop.append(close_provider)
    broker.include_router(build_router(deps))
    return service
