"""The model-provider interface llm's handler talks to, and what a call returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.messages.base import ErrorInfo
from shared.messages.completions import Usage
from shared.messages.llm import InvokeModel


@dataclass(frozen=True)
class Completion:
    model: str
    provider: str
    text: str
    usage: Usage
    stop_reason: str | None


class UpstreamError(Exception):
    """The provider failed. `info` is already client-safe (no key, headers or bodies)."""

    def __init__(self, info: ErrorInfo, status: int | None = None) -> None:
        super().__init__(info.message)
        self.info = info
        self.status = status


class ModelProvider(Protocol):
    name: str

    async def complete(self, request: InvokeModel) -> Completion:
        """Answer the request; raise UpstreamError when the provider fails."""

    async def close(self) -> None: ...
