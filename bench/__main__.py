"""Run every benchmark module (or those named) and write JSON plus a Markdown summary.

python -m bench                 # all
python -m bench metering audit  # some
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

import bench

RESULTS = Path("bench-results")


def discover() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = argv or discover()
    RESULTS.mkdir(exist_ok=True)
    summary: dict[str, Any] = {}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        started = time.perf_counter()
        result = module.run(RESULTS)
        result["wall_seconds"] = round(time.perf_counter() - started, 2)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        summary[name] = result
        sys.stderr.write(f"bench {name}: done in {result['wall_seconds']} s\n")
    lines = ["# Benchmark results", ""]
    for name, result in summary.items():
        lines += [f"## {name}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in _flatten(result).items()]
        lines.append("")
    (RESULTS / "summary.md").write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
