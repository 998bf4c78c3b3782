"""Fixtures shared by every tier. Each test makes its own tenant ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

TIERS = ("unit", "integration", "e2e")  # registered in pyproject's [tool.pytest.ini_options]
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, from the folder it lives in, so `-m unit` and
    `-m "not e2e"` select by tier. (A `pytestmark` in a conftest marks nothing.)"""
    for item in items:
        try:
            tier = item.path.resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def new_tenant_id() -> Callable[[str], str]:
    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make
