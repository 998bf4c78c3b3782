"""Fixtures shared by every tier. Each test makes its own tenant ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest


@pytest.fixture
def new_tenant_id() -> Callable[[str], str]:
    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make
