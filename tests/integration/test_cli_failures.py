"""Every CLI command, run as users run it (a subprocess), fails fast and readably.

Four ways to fail: nothing listening where NATS should be, a wrong password (a real
nats-server with the platform's ops user), NATS up with no service running, and a bad
tenant id. Each must exit non-zero within 5 s with nothing on stdout and at most two
short lines on stderr: no traceback, no reconnect storm, no secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from shared import natsserver
from shared.cli.main import app
from shared.natsauth import hash_password, ops_user, render, write_private

pytestmark = pytest.mark.integration

PASSWORD = "right-password-4f9c"
WRONG = "wrong-password-77aa"
TENANT = "acme-corp"
BAD_TENANT = "Bad_ID!"
JOB = "ftjob-0123456789abcdef"

# Every command but `run`/`demo` (they start the platform; see test_cli_extras) with
# the arguments it needs; `{t}` is the tenant id under test.
COMMANDS: dict[str, list[str]] = {
    "tenants create": ["tenants", "create", "--name", "Acme Corp", "-t", "{t}"],
    "tenants list": ["tenants", "list"],
    "tenants show": ["tenants", "show", "-t", "{t}"],
    "tenants set": ["tenants", "set", "-t", "{t}", "--rpm", "60"],
    "tenants versions": ["tenants", "versions", "-t", "{t}"],
    "tenants diff": ["tenants", "diff", "-t", "{t}", "--from", "1", "--to", "2"],
    "tenants rollback": ["tenants", "rollback", "-t", "{t}", "--to", "1"],
    "tenants preview": ["tenants", "preview", "-t", "{t}"],
    "tenants rotate-credentials": ["tenants", "rotate-credentials", "-t", "{t}", "-y"],
    "tenants delete": ["tenants", "delete", "-t", "{t}", "-y"],
    "ingest": ["ingest", "-t", "{t}", "{doc}"],
    "ask": ["ask", "-t", "{t}", "What is our refund window?"],
    "usage": ["usage", "-t", "{t}"],
    "usage totals": ["usage", "totals", "-t", "{t}"],
    "audit query": ["audit", "query", "-t", "{t}"],
    "audit export": ["audit", "export", "-t", "{t}", "--format", "csv"],
    "audit verify": ["audit", "verify", "-t", "{t}"],
    "finetune create": [
        "finetune",
        "create",
        "-t",
        "{t}",
        "--base-model",
        "offline-small",
        "--data",
        "{doc}",
    ],
    "finetune list": ["finetune", "list", "-t", "{t}"],
    "finetune show": ["finetune", "show", "-t", "{t}", JOB],
    "finetune cancel": ["finetune", "cancel", "-t", "{t}", JOB],
    "finetune delete": ["finetune", "delete", "-t", "{t}", JOB],
    "keys issue": ["keys", "issue", "-t", "{t}"],
    "keys list": ["keys", "list", "-t", "{t}"],
    "keys rotate": ["keys", "rotate", "-t", "{t}", "-y", "0123456789ab"],
    "keys revoke": ["keys", "revoke", "-t", "{t}", "-y", "0123456789ab"],
}
NOT_CONNECTING = {"run", "demo"}


def leaf_commands(command: Any, prefix: str = "") -> Iterator[str]:
    """Command paths of a Typer app (duck-typed: Typer vendors its own click)."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield prefix
        return
    if prefix and command.invoke_without_command:
        yield prefix  # `usage` runs on its own as well as through `usage totals`
    for name, sub in subcommands.items():
        if not sub.hidden:
            yield from leaf_commands(sub, f"{prefix} {name}".strip())


def test_the_matrix_covers_every_command() -> None:
    every = set(leaf_commands(typer.main.get_command(app)))
    assert every - NOT_CONNECTING == set(COMMANDS)


@dataclass
class Outcome:
    command: str
    code: int
    seconds: float
    stdout: str
    stderr: str


def run_all(args_for: dict[str, list[str]], env: dict[str, str], cwd: Path) -> dict[str, Outcome]:
    """Each command in its own process, a few at a time (the machine has 2 cores)."""

    def one(item: tuple[str, list[str]]) -> Outcome:
        name, args = item
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        return Outcome(name, done.returncode, time.monotonic() - started, done.stdout, done.stderr)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {o.command: o for o in pool.map(one, args_for.items())}


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    # From a directory with no platform in it: no secrets file to fall back on.
    env["TENANTRY_DATA_DIR"] = str(tmp_path / "no-platform-here")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def expand(tenant: str, doc: Path) -> dict[str, list[str]]:
    return {
        name: [a.replace("{t}", tenant).replace("{doc}", str(doc)) for a in args]
        for name, args in COMMANDS.items()
    }


@pytest.fixture(scope="module")
def auth_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with the platform's own ops user (same permissions as `make run`)."""
    root = tmp_path_factory.mktemp("cli-nats")
    conf = root / "auth.conf"
    write_private(conf, render([ops_user(hash_password(PASSWORD))]))
    proc, port = natsserver.start(root / "store", config_file=conf, log_file=root / "nats.log")
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "refunds.md"
    path.write_text("Refunds are accepted within 30 days.\n")
    return path


def assert_fails_cleanly(outcomes: dict[str, Outcome], expected: str) -> None:
    problems = []
    for o in outcomes.values():
        lines = o.stderr.strip().splitlines()
        ok = (
            o.code != 0
            and o.seconds < 5.0
            and o.stdout == ""
            and 1 <= len(lines) <= 2
            and len(o.stderr) < 400
            and lines[0].startswith("error: ")
            and "unexpected" not in lines[0]
            and expected in lines[0]
            and "Traceback" not in o.stderr
            and PASSWORD not in o.stderr
            and WRONG not in o.stderr
        )
        if not ok:
            problems.append(
                f"{o.command}: exit {o.code} in {o.seconds:.2f}s, "
                f"stdout={o.stdout[:200]!r} stderr={o.stderr[:600]!r}"
            )
    assert not problems, "\n".join(problems)


def test_no_nats_listening(tmp_path: Path, doc: Path) -> None:
    env = base_env(tmp_path)
    env["TENANTRY_NATS_URL"] = f"nats://127.0.0.1:{natsserver.free_port()}"
    outcomes = run_all(expand(TENANT, doc), env, tmp_path)
    assert_fails_cleanly(outcomes, "cannot reach NATS at")


def test_wrong_password(auth_nats: str, tmp_path: Path, doc: Path) -> None:
    env = base_env(tmp_path)
    env |= {
        "TENANTRY_NATS_URL": auth_nats,
        "TENANTRY_NATS_USER": "ops",
        "TENANTRY_NATS_PASSWORD": WRONG,
    }
    outcomes = run_all(expand(TENANT, doc), env, tmp_path)
    assert_fails_cleanly(outcomes, "refused the credentials (user 'ops')")


def test_no_credentials_at_all_says_where_to_put_them(auth_nats: str, tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"TENANTRY_NATS_URL": auth_nats}
    outcomes = run_all({"tenants show": ["tenants", "show", "-t", TENANT]}, env, tmp_path)
    assert_fails_cleanly(outcomes, "refused the credentials (anonymous login)")
    assert "TENANTRY_NATS_USER" in outcomes["tenants show"].stderr


def creds_file(tmp_path: Path) -> Path:
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"user": "ops", "password": PASSWORD}))
    return path


def test_nats_without_services(auth_nats: str, tmp_path: Path, doc: Path) -> None:
    env = base_env(tmp_path)
    # The right credentials, through the global --creds option's environment variable.
    env |= {"TENANTRY_NATS_URL": auth_nats, "TENANTRY_NATS_CREDS": str(creds_file(tmp_path))}
    outcomes = run_all(expand(TENANT, doc), env, tmp_path)
    assert_fails_cleanly(outcomes, "is not running")
    # Each names the service it needed.
    assert "the gateway" in outcomes["ask"].stderr
    assert "the metering service" in outcomes["usage totals"].stderr
    assert "the access service" in outcomes["tenants rotate-credentials"].stderr


def test_bad_tenant_id(auth_nats: str, tmp_path: Path, doc: Path) -> None:
    env = base_env(tmp_path)
    env |= {"TENANTRY_NATS_URL": auth_nats, "TENANTRY_NATS_CREDS": str(creds_file(tmp_path))}
    with_tenant = {k: v for k, v in expand(BAD_TENANT, doc).items() if "{t}" in COMMANDS[k]}
    outcomes = run_all(with_tenant, env, tmp_path)
    assert_fails_cleanly(outcomes, "invalid tenant id 'Bad_ID!'")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env["TENANTRY_NATS_URL"] = f"nats://127.0.0.1:{natsserver.free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "--debug", "tenants", "show", "-t", TENANT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" in done.stderr
    assert "\nerror: cannot reach NATS at" in done.stderr


def test_usage_errors_are_one_line_too(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    outcomes = run_all(
        {
            "missing option": ["tenants", "show"],
            "unknown option": ["tenants", "show", "-t", TENANT, "--bogus"],
            "unknown command": ["tenants", "purge"],
        },
        env,
        tmp_path,
    )
    for o in outcomes.values():
        lines = o.stderr.strip().splitlines()
        assert o.code == 2 and o.stdout == "", o
        assert len(lines) == 2 and lines[0].startswith("error: ") and "--help" in lines[1], o
    assert "'--tenant' / '-t'" in outcomes["missing option"].stderr
    # Alone, a group prints its help (a request, not an error).
    alone = run_all({"alone": ["tenants"]}, env, tmp_path)["alone"]
    assert alone.code == 0 and "rotate-credentials" in alone.stdout and alone.stderr == ""


def test_malformed_ids_are_one_line_naming_the_field(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"TENANTRY_NATS_URL": f"nats://127.0.0.1:{natsserver.free_port()}"}
    outcomes = run_all(
        {
            "finetune show": ["finetune", "show", "-t", TENANT, "ftjob-1"],
            "keys revoke": ["keys", "revoke", "-t", TENANT, "not a key id"],
        },
        env,
        tmp_path,
    )
    assert_fails_cleanly({"finetune show": outcomes["finetune show"]}, "error: job_id: ")
    assert_fails_cleanly({"keys revoke": outcomes["keys revoke"]}, "error: key_id: ")
    assert all("not a key id" not in o.stderr for o in outcomes.values())  # not echoed
