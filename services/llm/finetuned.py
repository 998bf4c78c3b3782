"""Serving a tenant's fine-tuned models ("ft:..."), to their owner only: offline ones
from their stored weights, ones trained by an OpenAI-compatible provider through it.

The model is looked up under the requesting tenant's own keys (finetune's KV bucket and
the tenant's own object store), never by its id alone: another tenant's model is simply
not there, so naming it gets exactly the answer an unknown model gets, and nothing in
the reply or its timing depends on whether it exists elsewhere. The registration is
read on every call, so a deleted model stops answering at once; weights are cached.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from nats.js.client import JetStreamContext

from services.llm import offline, tokens
from services.llm.invocation import ModelNotAllowed
from services.llm.providers import Completion, UpstreamError
from services.llm.remote import RemoteModels
from shared.finetune_store import ArtifactStore, JobStore
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.completions import Usage
from shared.messages.finetune import FineTuneModelInfo
from shared.messages.llm import InvokeModel
from shared.tuned_model import TunedModel

PROVIDER = "offline-finetuned"
CACHED_MODELS = 16


def is_finetuned(model: str) -> bool:
    return model.startswith("ft:")


def unknown(model: str) -> ModelNotAllowed:
    return ModelNotAllowed(
        ErrorInfo(code=ErrorCode.UNKNOWN_MODEL, message=f"unknown model {model[:100]!r}")
    )


class FineTunedModels:
    def __init__(self, js: JetStreamContext, remote: RemoteModels | None = None) -> None:
        self._js = js
        self._store: JobStore | None = None
        self._artifacts = ArtifactStore(js)
        self._remote = remote
        self._cache: OrderedDict[tuple[str, str], TunedModel] = OrderedDict()

    async def _info(self, tenant_id: str, model_id: str) -> FineTuneModelInfo:
        if self._store is None:
            self._store = await JobStore.open(self._js)
        info = await self._store.model(tenant_id, model_id)
        if info is None:
            raise unknown(model_id)
        return info

    async def _weights(self, tenant_id: str, info: FineTuneModelInfo) -> TunedModel:
        key = (tenant_id, info.model_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        raw = await self._artifacts.get(tenant_id, info.object_name)
        if raw is None:
            raise unknown(info.model_id)
        loaded = await asyncio.to_thread(TunedModel.from_bytes, raw)
        self._cache[key] = loaded
        while len(self._cache) > CACHED_MODELS:
            self._cache.popitem(last=False)
        return loaded

    async def complete(self, request: InvokeModel) -> Completion:
        info = await self._info(request.tenant_id, request.model)
        if info.object_name:
            return await self._offline(request, await self._weights(request.tenant_id, info))
        if self._remote is None:
            # Trained by the OpenAI-compatible backend, but this llm has no key for it.
            raise UpstreamError(
                ErrorInfo(
                    code=ErrorCode.UPSTREAM_ERROR,
                    message="this fine-tuned model's provider is not configured on llm",
                )
            )
        return await self._remote.complete(request)

    async def close(self) -> None:
        if self._remote is not None:
            await self._remote.close()

    async def _offline(self, request: InvokeModel, tuned: TunedModel) -> Completion:
        # The question alone, as the model was trained on prompts (no passages).
        question = offline.question_of(request).strip()
        answer = tuned.answer(question, max_tokens=request.max_tokens)
        text, produced, truncated = tokens.truncate(answer, request.max_tokens)
        return Completion(
            model=request.model,
            provider=PROVIDER,
            text=text,
            usage=Usage(input_tokens=offline.input_tokens(request), output_tokens=produced),
            stop_reason="max_tokens" if truncated else "end_turn",
        )
