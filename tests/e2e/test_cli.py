"""The CLI against the platform as `make run` starts it, run as users run it.

A tenant's whole life from the command line: onboarding with its credentials written
to a file, ingest, a question asked with the tenant's own credentials, live metering
totals, the audit trail as JSON and CSV, credential rotation (the old password stops
working), offboarding. Every read command's `--json` is parsed here.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.launcher import Platform

pytestmark = pytest.mark.e2e


def cli(
    platform: Platform, *args: str, creds: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}
    # Ops credentials from the platform's data directory, as `make run` leaves them.
    base = ["--nats-url", platform.nats_url, "--data-dir", str(platform.data_dir)]
    if creds is not None:
        base += ["--creds", str(creds)]
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *base, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_tenant_from_onboarding_to_offboarding(platform: Platform, tmp_path: Path) -> None:
    tid = f"cli-{uuid.uuid4().hex[:8]}"
    creds = tmp_path / "tenant.json"

    made = ok_json(
        cli(platform, "tenants", "create", "--name", "Cli Co", "-t", tid,
            "--creds-out", str(creds), "--json")
    )  # fmt: skip
    assert made["tenant_id"] == tid and made["created"] is True
    assert "password" not in made  # written to the file instead
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    written = json.loads(creds.read_text())
    assert written["tenant_id"] == tid and written["user"] == made["user"]

    shown = ok_json(cli(platform, "tenants", "show", "-t", tid, "--json"))
    assert shown["config"]["tenant_id"] == tid and shown["config"]["name"] == "Cli Co"
    assert "Cli Co" in shown["system_prompt"]

    doc = tmp_path / "hours.md"
    doc.write_text("Cli Co support hours are 7 to 3 on weekdays.\n")
    assert ok_json(cli(platform, "ingest", "-t", tid, str(doc), "--json"))["chunks"] == 1

    # As the tenant itself: its own credentials file, nothing of ops'.
    done = ok_json(
        cli(platform, "ask", "-t", tid, "When are the support hours?", "--json", creds=creds)
    )
    assert "7 to 3" in done["text"] and done["model"] == "offline-extractive"

    totals = ok_json(cli(platform, "usage", "totals", "-t", tid, "--json"))
    assert totals["requests_settled"] >= 1 and totals["spent_nanousd"] > 0

    versions = ok_json(cli(platform, "tenants", "versions", "-t", tid, "--json"))
    assert [v["version"] for v in versions] == [1]

    # Audit rows land in batches (up to ~1 s): wait for the onboarding row.
    rows: list[dict[str, Any]] = []
    for _ in range(40):
        rows = ok_json(cli(platform, "audit", "query", "-t", tid, "--json"))["rows"]
        if rows:
            break
    assert rows and all(r["tenant_id"] == tid for r in rows)
    out = tmp_path / "trail.csv"
    exported = cli(platform, "audit", "export", "-t", tid, "--format", "csv",
                   "--since", "2020-01-01", "--out", str(out))  # fmt: skip
    assert exported.returncode == 0 and exported.stdout == "", exported.stderr
    with out.open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) >= 1
    assert ok_json(cli(platform, "audit", "verify", "-t", tid, "--json"))["intact"] is True

    # Rotation: the old file stops working at once, the new one works.
    new_creds = tmp_path / "tenant-new.json"
    rotated = ok_json(
        cli(platform, "tenants", "rotate-credentials", "-t", tid, "-y",
            "--creds-out", str(new_creds), "--json")
    )  # fmt: skip
    assert rotated["user"] == made["user"] and "password" not in rotated
    refused = cli(platform, "ask", "-t", tid, "Hours?", creds=creds)
    assert refused.returncode == 1 and refused.stdout == ""
    assert (
        refused.stderr.startswith("error: NATS at") and "refused the credentials" in refused.stderr
    )
    assert written["password"] not in refused.stderr
    again = cli(platform, "ask", "-t", tid, "When are the support hours?", creds=new_creds)
    assert again.returncode == 0 and "7 to 3" in again.stdout, again.stderr

    listed = cli(platform, "tenants", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert tid in {t["tenant_id"] for t in json.loads(listed.stdout)}

    gone = cli(platform, "tenants", "delete", "-t", tid, "-y")
    assert gone.returncode == 0 and f"tenant {tid} deleted" in gone.stdout, gone.stderr
    missing = cli(platform, "tenants", "show", "-t", tid)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
    assert missing.stderr.rstrip().endswith("[unknown_tenant]")  # the platform's code
