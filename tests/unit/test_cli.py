from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shared.cli.main import app
from shared.cli.tenants import _slug

pytestmark = pytest.mark.unit
runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "demo", "ingest", "ask", "usage", "tenants", "audit"):
        assert command in result.output


def test_bad_tenant_id_is_refused_before_any_connection() -> None:
    result = runner.invoke(
        app,
        [
            "tenants",
            "create",
            "--name",
            "Acme",
            "--id",
            "Acme.*",
            "--nats-url",
            "nats://127.0.0.1:1",
        ],
    )
    assert result.exit_code == 1
    assert "invalid tenant id" in result.output


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme Corp", "acme-corp"),
        ("  Globex,  Inc. ", "globex-inc"),
        ("Ünïcode Ltd", "unicode-ltd"),
    ],
)
def test_default_ids_are_valid_slugs(name: str, slug: str) -> None:
    assert _slug(name) == slug
