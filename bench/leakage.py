"""leakage: scan a 2 KB response against 1,000 tenants and 1,000,000 fingerprints.

In-process (no bus): every detector the service runs, on one core. The tenants are
synthetic (name, alias, domain each); the fingerprints are random 64-bit hashes spread
over 10,000 documents, plus one real document that the "quoting" response copies from,
so both the clean path and the path that finds something are timed.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.leakage.app import default_detectors
from services.leakage.content import FingerprintIndex
from services.leakage.directory import TenantDirectory, TenantIdentity
from services.leakage.scanner import Scanner
from shared.canary import Canaries
from shared.fingerprint import fingerprints
from shared.messages.leakage import ScanLocation, ScanText, Verdict

TENANTS = 1_000
FINGERPRINTS = 1_000_000
DOCUMENTS_PER_TENANT = 10
ROUNDS = 2_000

# Templates filled with random numbers and names, so every timed response is different
# (no cache sees the same text twice) yet reads like a business answer.
SENTENCES = [
    "Revenue for the quarter rose {p}% to {m} million, helped by lower freight costs.",
    "The returns backlog fell to {n} open cases after we added a second shift in {city}.",
    "Customer satisfaction improved to {p} points, with delivery reliability the main driver.",
    "We recommend rolling the loyalty discount out to all {n} stores in {month}.",
    "Energy use per square metre fell {p}% after the LED retrofit in the {city} warehouse.",
    "{name} confirmed that two suppliers fell below the on-time threshold of {p}%.",
    "Training on the new returns process runs on {d} {month} for all warehouse staff.",
    "Headcount reached {n} at the end of {month}, up {p} since the last review.",
    "{name} will send the revised forecast for {city} by Friday, ticket NW-{n}.",
    "Gross margin was {p}.{d}% against a plan of {p}%, and stock turn improved to {d}.",
]
CITIES = ["Leeds", "Derby", "Bristol", "Glasgow", "Cardiff", "York", "Hull", "Bath"]
MONTHS = ["January", "March", "May", "July", "September", "November"]
NAMES = ["Priya", "Tom", "Aisha", "Marek", "Lena", "Jonas", "Chidi", "Sofia"]
QUOTED = (
    "Cold chain consignments travel in the blue crates, which must be pre-cooled for at "
    "least forty minutes before loading, and the crate logger is read at handover. If a "
    "customer refuses a delivery, the driver photographs the parcel label and the doorstep."
)


def response_text(rng: random.Random, size: int = 2048) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < size:
        parts.append(
            rng.choice(SENTENCES).format(
                p=rng.randint(2, 99),
                m=round(rng.uniform(1, 90), 1),
                n=rng.randint(100, 9999),
                d=rng.randint(1, 28),
                city=rng.choice(CITIES),
                month=rng.choice(MONTHS),
                name=rng.choice(NAMES),
            )
        )
    return " ".join(parts)[:size]


def build(rng: random.Random) -> tuple[Scanner, FingerprintIndex, TenantDirectory, float]:
    directory = TenantDirectory(
        TenantIdentity(
            f"tenant-{i:04d}",
            f"Synthco {i} Holdings",
            (f"Synthco{i}",),
            (f"synthco{i}.example",),
        )
        for i in range(TENANTS)
    )
    index = FingerprintIndex()
    per_document = FINGERPRINTS // (TENANTS * DOCUMENTS_PER_TENANT)
    np_rng = np.random.default_rng(7)
    for t in range(TENANTS):
        for d in range(DOCUMENTS_PER_TENANT):
            hashes = np_rng.integers(0, 2**64 - 1, per_document, dtype=np.uint64)
            index.replace_document(f"tenant-{t:04d}", f"doc-{d}", hashes)
    index.replace_document("tenant-0001", "cold-chain", fingerprints(QUOTED))
    canaries = Canaries(b"bench-secret")
    scanner = Scanner(default_detectors(directory, index, canaries), canaries=canaries)
    started = time.perf_counter()
    index.owners(np.zeros(1, dtype=np.uint64))  # the lazy rebuild of the sorted arrays
    directory.matcher()  # and of the Aho-Corasick automaton
    return scanner, index, directory, time.perf_counter() - started


def timed(scanner: Scanner, requests: list[ScanText]) -> tuple[float, float, set[Verdict]]:
    for request in requests[:50]:  # warm up (imports, regex compilation, allocator)
        scanner.scan(request)
    samples = []
    verdicts = set()
    for request in requests:
        started = time.perf_counter_ns()
        verdicts.add(scanner.scan(request).verdict)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1], verdicts


def run(results_dir: Path) -> dict[str, Any]:
    rng = random.Random(42)
    scanner, index, directory, build_s = build(rng)
    clean = [
        ScanText(tenant_id="tenant-0000", location=ScanLocation.RESPONSE, text=response_text(rng))
        for _ in range(ROUNDS)
    ]
    quoting = [
        ScanText(
            tenant_id="tenant-0000",
            location=ScanLocation.RESPONSE,
            text=response_text(rng, 2048 - len(QUOTED) - 1) + " " + QUOTED,
        )
        for _ in range(ROUNDS // 4)
    ]
    clean_p50, clean_p99, clean_verdicts = timed(scanner, clean)
    quote_p50, quote_p99, quote_verdicts = timed(scanner, quoting)
    return {
        "tenants": len(directory),
        "identifiers": len(directory.matcher()),
        "fingerprints": len(index),
        "fingerprint_memory_bytes": index.nbytes(),
        "fingerprint_memory_mb": round(index.nbytes() / 2**20, 1),
        "index_build_ms": round(build_s * 1000, 1),
        "response_bytes": len(clean[0].text.encode()),
        "clean": {
            "p50_ms": round(clean_p50, 3),
            "p99_ms": round(clean_p99, 3),
            "verdicts": ",".join(sorted(v.value for v in clean_verdicts)),
        },
        "quoting_another_tenant": {
            "p50_ms": round(quote_p50, 3),
            "p99_ms": round(quote_p99, 3),
            "verdicts": ",".join(sorted(v.value for v in quote_verdicts)),
        },
        "p99_target_ms": 2.0,
    }
