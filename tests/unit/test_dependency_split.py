"""The pyproject extras match what the code imports: each image and install runs with
only its extras. Checked by importing in a fresh interpreter where the packages of the
missing extras cannot be imported (no second virtualenv, nothing downloaded)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shared.launcher import SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# Import names of the extras' distributions.
PLATFORM = (
    "faststream", "qdrant_client", "anthropic", "openai", "numpy", "ahocorasick", "bcrypt",
    "phonenumbers", "stdnum", "uvloop", "prometheus_client", "opentelemetry.sdk",
    "opentelemetry.exporter",
)  # fmt: skip
AUDIT = ("clickhouse_connect",)
EMBEDDED = ("chdb",)

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{{name}} is not in this install")
        return None
sys.meta_path.insert(0, Block())
"""


def importable(module: str, blocked: tuple[str, ...]) -> tuple[bool, str]:
    code = BLOCKER.format(blocked=blocked) + f"import {module}\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return done.returncode == 0, done.stderr[-1500:]


def test_the_blocker_blocks() -> None:
    ok, err = importable("faststream", PLATFORM)
    assert not ok and "not in this install" in err


def test_the_client_needs_only_the_base_dependencies() -> None:
    ok, err = importable("shared.client", PLATFORM + AUDIT + EMBEDDED)
    assert ok, err


def test_the_cli_needs_only_the_base_dependencies() -> None:
    ok, err = importable("shared.cli.main", PLATFORM + AUDIT + EMBEDDED)
    assert ok, err


def test_the_service_image_runs_without_clickhouse_libraries() -> None:
    apps = ", ".join(f"services.{name}.app" for name in SERVICES if name != "audit")
    ok, err = importable(apps, AUDIT + EMBEDDED)
    assert ok, err


def test_the_audit_image_runs_without_chdb() -> None:
    ok, err = importable("services.audit.app", EMBEDDED)
    assert ok, err


def test_extras_are_declared_as_the_images_use_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for heavy in ("faststream", "qdrant-client", "clickhouse-connect", "chdb", "anthropic"):
        assert heavy not in base, heavy
    assert any(d.startswith("clickhouse-connect==") for d in extras["audit"])
    assert not any("chdb" in d for d in extras["audit"] + extras["platform"])
    assert any(d.startswith("chdb==") for d in extras["embedded"])
    assert any(d.startswith("tenantry[platform,audit,embedded]") for d in extras["dev"])
