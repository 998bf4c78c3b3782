"""Latency against offered load, from pipeline.json and peer.json, as bench-results/latency.png.

Runs after `pipeline` and `peer` (the runner goes alphabetically); with either missing it
plots what there is. One line per system, replica count and stub delay: added p99 (solid)
and p50 (dotted) at each offered rate; the dashed line is the 50 ms limit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LIMIT_MS = 50.0


def series(results_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """label -> the step list of one step_up run."""
    out: dict[str, list[dict[str, Any]]] = {}
    pipeline = results_dir / "pipeline.json"
    if pipeline.exists():
        data = json.loads(pipeline.read_text())
        for replicas in ("replicas_1", "replicas_2"):
            for key, run in data.get(replicas, {}).items():
                if key.startswith("throughput_"):
                    delay = key.removeprefix("throughput_delay_")
                    out[f"tenantry {replicas.replace('_', '=')} stub={delay}"] = run["steps"]
    peer = results_dir / "peer.json"
    if peer.exists():
        data = json.loads(peer.read_text())
        for workers, runs in data.items():
            if not workers.startswith("workers_") or not isinstance(runs, dict):
                continue
            for key, run in runs.items():
                if key.startswith("throughput_"):
                    delay = key.removeprefix("throughput_delay_")
                    label = f"{data['peer']} {workers.replace('_', '=')} stub={delay}"
                    out[label] = run["steps"]
    return out


def run(results_dir: Path) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt

    lines = series(results_dir)
    if not lines:
        return {"skipped": "no pipeline.json or peer.json to plot"}
    fig, ax = plt.subplots(figsize=(10, 6))
    for label, steps in lines.items():
        rates = [s["offered_rps"] for s in steps]
        (line,) = ax.plot(rates, [_p(s, "p99") for s in steps], marker="o", label=label)
        ax.plot(rates, [_p(s, "p50") for s in steps], linestyle=":", color=line.get_color())
    ax.axhline(LIMIT_MS, linestyle="--", color="grey", label="added p99 limit (50 ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("added latency (ms): p99 solid, p50 dotted")
    ax.set_title("Added latency against offered load (stub model, 2 cores)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    path = results_dir / "latency.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"png": str(path), "series": len(lines)}


def _p(step: dict[str, Any], key: str) -> float:
    # A step that timed out entirely has no latencies; draw it at the top of the axis.
    value = float(step.get("added_ms", {}).get(key, 0.0))
    return max(value, 0.1) if step.get("ok") else 10_000.0
