"""Measure retrieval quality on a labelled set, through the same store and embedder code.

    python -m services.retrieval.recall [path/to/labelled.json] [--k 5] [--dim 1024] [-v]
        [--embedder hashing|minilm|static] [--model path/to/static-model]

The set is JSON: {"documents": [{"document_id", "text"}], "queries": [{"query",
"relevant": [document ids]}]}, or a folder in BEIR's layout (tests/data/nq_sample). It
is ingested into a temporary local Qdrant and every query is searched; results are
ranked by document (a document's best chunk counts), and recall@k (share of relevant
documents in the first k) and MRR (reciprocal rank of the first relevant document) are
averaged over queries. Query-embedding latency is measured too, since it sits on every
request's path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.retrieval import index
from services.retrieval.adapters import QdrantStore
from services.retrieval.app import make_embedder
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.embedding import Embedder, HashingEmbedder
from services.retrieval.settings import RetrievalSettings
from shared.messages.retrieval import Document

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
DEFAULT_SET = DATA / "retrieval_labelled.json"
# Not written for this project: 41 Natural Questions queries and their 45 Wikipedia
# passages, from BEIR's NQ (see tests/data/nq_sample/README.md for source and licence).
NQ_SAMPLE = DATA / "nq_sample"
EVAL_TENANT = "recall-eval"
# Chunks fetched per query; enough that k distinct documents survive de-duplication.
FETCH = 20


def _say(*parts: object) -> None:
    """Command-line output (this module is a tool, not a service): plain stdout."""
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


@dataclass
class RecallReport:
    k: int
    queries: int
    documents: int
    chunks: int
    recall_at_k: float
    mrr: float
    embed_p50_us: float
    embed_p99_us: float
    ingest_s: float
    misses: list[tuple[str, list[str], list[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class LabelledSet:
    documents: list[Document]
    queries: list[tuple[str, set[str]]]


def load_set(path: Path) -> LabelledSet:
    if path.is_dir():
        return load_beir(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    return LabelledSet(
        documents=[Document.model_validate(d) for d in data["documents"]],
        queries=[(q["query"], set(q["relevant"])) for q in data["queries"]],
    )


def load_beir(folder: Path) -> LabelledSet:
    """A set in BEIR's layout (corpus.jsonl, queries.jsonl, qrels.tsv): the format public
    retrieval benchmarks ship in. A document's text is its title, then its text."""

    def rows(name: str) -> list[dict[str, str]]:
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    relevant: dict[str, set[str]] = {}
    for line in (folder / "qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            relevant.setdefault(query_id, set()).add(doc_id)
    return LabelledSet(
        documents=[
            Document(document_id=d["_id"], text=f"{d.get('title', '')}. {d['text']}".lstrip(". "))
            for d in rows("corpus.jsonl")
        ],
        queries=[
            (q["text"], relevant[q["_id"]]) for q in rows("queries.jsonl") if q["_id"] in relevant
        ],
    )


async def evaluate(
    labelled: LabelledSet,
    store_dir: Path,
    *,
    embedder: Embedder | None = None,
    chunking: ChunkingConfig | None = None,
    k: int = 5,
) -> RecallReport:
    documents, queries = labelled.documents, labelled.queries
    embedder = embedder or HashingEmbedder()
    store = QdrantStore.local(store_dir)
    await store.open()
    try:
        started = time.perf_counter()
        done = await index.ingest(
            store, embedder, chunking or ChunkingConfig(), EVAL_TENANT, documents
        )
        ingest_s = time.perf_counter() - started
        recalls: list[float] = []
        reciprocal_ranks: list[float] = []
        misses: list[tuple[str, list[str], list[str]]] = []
        for query, relevant in queries:
            hits = await index.search(store, embedder, EVAL_TENANT, query, FETCH)
            ranked = list(dict.fromkeys(hit.document_id for hit in hits))
            found = relevant & set(ranked[:k])
            recalls.append(len(found) / len(relevant))
            first = next((i for i, d in enumerate(ranked) if d in relevant), None)
            reciprocal_ranks.append(0.0 if first is None else 1.0 / (first + 1))
            if found != relevant:
                misses.append((query, sorted(relevant - found), ranked[:k]))
    finally:
        await store.close()
    p50, p99 = _embed_latency_us(embedder, [q for q, _ in queries])
    return RecallReport(
        k=k,
        queries=len(queries),
        documents=done.documents,
        chunks=done.chunks,
        recall_at_k=statistics.fmean(recalls),
        mrr=statistics.fmean(reciprocal_ranks),
        embed_p50_us=p50,
        embed_p99_us=p99,
        ingest_s=ingest_s,
        misses=misses,
    )


def _embed_latency_us(
    embedder: Embedder, queries: list[str], rounds: int = 20
) -> tuple[float, float]:
    """Per-query embed time, warm (as in a running service), in microseconds."""
    samples: list[float] = []
    for _ in range(rounds):
        for query in queries:
            started = time.perf_counter_ns()
            embedder.embed([query])
            samples.append((time.perf_counter_ns() - started) / 1_000)
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.retrieval.recall")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--dim", type=int, default=1024, help="hashing embedder width")
    parser.add_argument("-v", "--verbose", action="store_true", help="list missed queries")
    parser.add_argument("--embedder", choices=("hashing", "minilm", "static"), default="hashing")
    parser.add_argument("--model", type=Path, help="static model folder (--embedder static)")
    args = parser.parse_args(argv)
    embedder = make_embedder(
        RetrievalSettings(embed_dim=args.dim, embedder=args.embedder, embed_model_path=args.model)
    )
    with tempfile.TemporaryDirectory(prefix="tenantry-recall-") as tmp:
        report = asyncio.run(evaluate(load_set(args.path), Path(tmp), embedder=embedder, k=args.k))
    # A command-line report, not a service: plain stdout is the interface here.
    _say(f"set         {args.path}")
    _say(f"embedder    {embedder.name}")
    _say(
        f"corpus      {report.documents} documents, {report.chunks} chunks "
        f"(ingested in {report.ingest_s * 1000:.0f} ms)"
    )
    _say(f"queries     {report.queries}")
    _say(f"recall@{report.k}    {report.recall_at_k:.3f}")
    _say(f"MRR         {report.mrr:.3f}")
    _say(f"query embed p50 {report.embed_p50_us:.0f} us, p99 {report.embed_p99_us:.0f} us")
    if args.verbose:
        for query, missed, got in report.misses:
            _say(f"  miss: {query!r}\n        wanted {missed}\n        got    {got}")


if __name__ == "__main__":
    main()
