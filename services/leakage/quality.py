"""Measure the detectors on the labelled corpus: precision and recall per detector.

    python -m services.leakage.quality [tests/data/leakage] [-v]

The folder holds `tenants.json` (tenants and the documents they ingested) and
`corpus.json` (cases: text, scanning tenant, location, optional context chunks and the
labels that must be found). Every case is scanned through the same Scanner the service
runs. Scoring is per case and detector: a case labelled with a detector is a positive
for it, and it is found when that detector reports at least one finding of the labelled
kind; every other case (including ordinary business text) is a negative for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.leakage.app import default_detectors
from services.leakage.content import FingerprintIndex
from services.leakage.directory import TenantDirectory, TenantIdentity
from services.leakage.scanner import Scanner
from shared.canary import Canaries
from shared.fingerprint import fingerprints
from shared.messages.leakage import ScanLocation, ScanText
from shared.messages.retrieval import Chunk

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "leakage"
EVAL_SECRET = b"tenantry-quality-eval"
DEFAULT_TENANT = "northwind-3a9f"


def _say(*parts: object) -> None:
    """Command-line output (this module is a tool, not a service): plain stdout."""
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


@dataclass
class DetectorScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    positives: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class QualityReport:
    cases: int
    scores: dict[str, DetectorScore]
    # Cases labelled as clean that something flagged, and positives missed: (id, detail).
    false_positives: list[tuple[str, str]] = field(default_factory=list)
    misses: list[tuple[str, str]] = field(default_factory=list)


def build_scanner(folder: Path) -> tuple[Scanner, Canaries]:
    setup = json.loads((folder / "tenants.json").read_text(encoding="utf-8"))
    directory = TenantDirectory(
        TenantIdentity(t["tenant_id"], t["name"], tuple(t["aliases"]), tuple(t["domains"]))
        for t in setup["tenants"]
    )
    index = FingerprintIndex()
    for doc in setup["documents"]:
        index.replace_document(doc["tenant_id"], doc["document_id"], fingerprints(doc["text"]))
    canaries = Canaries(EVAL_SECRET)
    return Scanner(default_detectors(directory, index, canaries), canaries=canaries), canaries


def _text(case: dict[str, Any], canaries: Canaries) -> str:
    text = str(case["text"])
    while "{canary:" in text:
        start = text.index("{canary:")
        end = text.index("}", start)
        text = text[:start] + canaries.token(text[start + 8 : end]) + text[end + 1 :]
    return text


def evaluate(folder: Path = DEFAULT_DIR) -> QualityReport:
    scanner, canaries = build_scanner(folder)
    cases: list[dict[str, Any]] = json.loads((folder / "corpus.json").read_text())["cases"]
    detectors = sorted(
        {label.split(".")[0] for case in cases for label in case["labels"]}
        | {d.name for d in scanner.detectors}
    )
    scores = {name: DetectorScore() for name in detectors}
    report = QualityReport(cases=len(cases), scores=scores)
    for case in cases:
        tenant = case.get("tenant", DEFAULT_TENANT)
        result = scanner.scan(
            ScanText(
                tenant_id=tenant,
                location=ScanLocation(case.get("location", "prompt")),
                text=_text(case, canaries),
                context=[Chunk(chunk_id="c", **chunk) for chunk in case.get("context", [])],
            )
        )
        found = {(f.detector, f.kind) for f in result.findings}
        wanted: dict[str, str | None] = {}
        for label in case["labels"]:
            detector, _, kind = label.partition(".")
            wanted[detector] = kind or None
        for name in detectors:
            got = {kind for detector, kind in found if detector == name}
            if name in wanted:
                scores[name].positives += 1
                kind = wanted[name]
                if got and (kind is None or kind in got):
                    scores[name].tp += 1
                else:
                    scores[name].fn += 1
                    report.misses.append((case["id"], f"{name}: wanted {kind}, got {sorted(got)}"))
            elif got:
                scores[name].fp += 1
                report.false_positives.append((case["id"], f"{name}: {sorted(got)}"))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.leakage.quality")
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("-v", "--verbose", action="store_true", help="list every error")
    args = parser.parse_args(argv)
    report = evaluate(args.folder)
    # A command-line report, not a service: plain stdout is the interface here.
    _say(f"corpus      {args.folder} ({report.cases} cases)")
    header = ("detector", "positives", "TP", "FP", "FN", "precision", "recall")
    _say("{:<16} {:>9} {:>4} {:>4} {:>4} {:>9} {:>7}".format(*header))
    for name, s in report.scores.items():
        _say(
            f"{name:<16} {s.positives:>9} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
            f"{s.precision:>9.3f} {s.recall:>7.3f}"
        )
    if args.verbose:
        for case_id, detail in report.false_positives:
            _say(f"  false positive {case_id}: {detail}")
        for case_id, detail in report.misses:
            _say(f"  missed         {case_id}: {detail}")


if __name__ == "__main__":
    main()
