from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from shared.cli import common
from shared.cli.main import app
from shared.cli.tenants import _slug
from shared.embedded_auth import prepare

pytestmark = pytest.mark.unit
runner = CliRunner()
UNREACHABLE = ["--nats-url", "nats://127.0.0.1:1"]


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "demo", "ingest", "ask", "usage", "tenants", "audit"):
        assert command in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("tenantry ")


def test_bad_tenant_id_is_refused_before_any_connection() -> None:
    result = runner.invoke(
        app, [*UNREACHABLE, "tenants", "create", "--name", "Acme", "--tenant", "Acme.*"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid tenant id 'Acme.*'")


def test_old_id_option_still_works_for_scripts() -> None:
    result = runner.invoke(app, [*UNREACHABLE, "tenants", "create", "--name", "A", "--id", "B!"])
    assert result.exit_code == 1
    assert "invalid tenant id 'B!'" in result.stderr


def _params(command: Any, path: str = "tenantry") -> list[tuple[str, Any]]:
    found = [(path, p) for p in command.params]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += _params(sub, f"{path} {name}")
    return found


def test_every_option_and_argument_has_help_text() -> None:
    missing = [
        f"{path} {p.name}"
        for path, p in _params(typer.main.get_command(app))
        if not getattr(p, "hidden", False) and not (getattr(p, "help", None) or "").strip()
    ]
    assert not missing


def test_deleting_without_a_terminal_needs_yes() -> None:
    result = runner.invoke(app, [*UNREACHABLE, "tenants", "delete", "-t", "acme"], input="")
    assert result.exit_code == 1
    assert "--yes" in result.stderr
    assert result.stdout == ""


def test_ops_credentials_come_from_the_platform_secrets(tmp_path: Path) -> None:
    """The CLI reads the file the embedded platform writes (without importing bcrypt)."""
    auth = prepare(tmp_path, ("gateway",))
    common.settings = common.Globals(data_dir=tmp_path)
    found = common.ops_credentials()
    assert (found.user, found.password) == auth.ops_credentials


def test_explicit_credentials_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(tmp_path, ("gateway",))
    creds = tmp_path / "mine.json"
    creds.write_text(json.dumps({"user": "alice", "password": "pw"}))
    common.settings = common.Globals(data_dir=tmp_path, creds=creds)
    assert common.ops_credentials().user == "alice"
    monkeypatch.setenv("TENANTRY_NATS_PASSWORD", "from-env")
    common.settings = common.Globals(data_dir=tmp_path, user="bob")
    found = common.ops_credentials()
    assert (found.user, found.password) == ("bob", "from-env")


def test_a_broken_credentials_file_is_one_line_without_its_content(tmp_path: Path) -> None:
    creds = tmp_path / "broken.json"
    creds.write_text('{"user": "ops", "pass": "s3cret-value"}')
    result = runner.invoke(app, [*UNREACHABLE, "--creds", str(creds), "tenants", "show", "-t", "a"])
    assert result.exit_code == 1
    assert "s3cret-value" not in result.output
    assert "neither a Tenantry credentials file" in result.stderr


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
