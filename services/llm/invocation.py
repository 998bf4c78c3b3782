"""One model invocation: the allow-list check, then the provider. No broker here."""

from __future__ import annotations

from services.llm.providers import Completion, ModelProvider
from shared.messages.base import ErrorCode, ErrorInfo
from shared.messages.llm import InvokeModel


class ModelNotAllowed(Exception):
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def check_allowed(request: InvokeModel) -> None:
    """The gateway checks too; llm checks again because it is the one spending money."""
    if request.model not in request.allowed_models:
        allowed = ", ".join(request.allowed_models) or "none"
        raise ModelNotAllowed(
            ErrorInfo(
                code=ErrorCode.MODEL_NOT_ALLOWED,
                message=f"model {request.model[:100]!r} is not allowed for this tenant; "
                f"allowed: {allowed[:500]}",
            )
        )


async def invoke(provider: ModelProvider, request: InvokeModel) -> Completion:
    check_allowed(request)
    return await provider.complete(request)
