"""Typed messages: one pydantic model per message, grouped by the service that owns them."""

from shared.messages.base import Envelope, ErrorCode, ErrorInfo, Reply

__all__ = ["Envelope", "ErrorCode", "ErrorInfo", "Reply"]
