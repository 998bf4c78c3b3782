"""retrieval's settings: where Qdrant lives, the embedding width and the chunk sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, model_validator

from shared.settings import CanarySettings


class RetrievalSettings(CanarySettings):
    """Qdrant is a server when TENANTRY_QDRANT_URL is set, else embedded in a folder:
    Qdrant Edge (one shard per tenant, HNSW) by default, or qdrant-client's local mode."""

    qdrant_url: HttpUrl | None = Field(
        default=None, description="Qdrant server URL; unset means embedded (a folder)."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="Qdrant server API key.")
    qdrant_embedded: Literal["edge", "local"] = Field(
        default="edge",
        description="Embedded engine: 'edge' (Qdrant Edge shards with HNSW, in a worker "
        "process) or 'local' (qdrant-client local mode, a brute-force scan).",
    )
    qdrant_path: Path | None = Field(
        default=None,
        description="Embedded folder; defaults to <data_dir>/qdrant-edge (edge) "
        "or <data_dir>/qdrant (local).",
    )
    # Measured: an idle open small shard costs a thread, a file and ~0.2 MB of heap, and
    # once loaded from disk ~0.4 MB of mapped files (12 MB before payload indexes waited
    # for 1,000 points and read-ahead was turned off; 43 MB before the original vectors
    # were left cold in their mmap): 256 open ~ 88 MB heap + 112 MB mapped.
    edge_max_open_shards: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Edge: tenant shards kept open; the least recently used idle ones "
        "beyond this are closed and reopened on their next request.",
    )
    edge_hnsw_ef: int = Field(
        default=512,
        ge=16,
        le=4096,
        description="Edge: how many candidates a search's HNSW walk considers. Higher finds "
        "the best chunk more often and costs time on large tenants (measured in "
        "services/retrieval/shards.py: 512 -> 75.5 % exact top-1 at 100k chunks, p99 11 ms; "
        "1024 -> 88.5 %, p99 14 ms).",
    )
    qdrant_timeout_s: int = Field(default=10, ge=1, le=300, description="Server call timeout.")
    embed_dim: int = Field(
        default=1024, ge=64, le=8192, description="Embedding width (hashing embedder)."
    )
    embedder: Literal["hashing", "minilm", "static"] = Field(
        default="hashing",
        description="'hashing' (lexical, built in), 'minilm' (all-MiniLM-L6-v2 on torch) or "
        "'static' (a model2vec static model in TENANTRY_EMBED_MODEL_PATH); the last two "
        "need the 'semantic' extra. A tenant's collection keeps the width it was built "
        "with: switching embedders means re-ingesting.",
    )
    embed_model_path: Path | None = Field(
        default=None, description="Folder of the static model (embedder=static)."
    )
    chunk_max_chars: int = Field(default=800, ge=100, le=20_000, description="Chunk size cap.")
    chunk_target_chars: int = Field(
        default=500, ge=50, description="Size after which a chunk ends at the next paragraph."
    )
    chunk_overlap_chars: int = Field(
        default=120, ge=0, description="Text repeated from the end of the previous chunk."
    )
    plant_canaries: bool = Field(
        default=True, description="Append the tenant's canary token to every stored chunk."
    )

    @model_validator(mode="after")
    def _chunk_sizes(self) -> RetrievalSettings:
        if not self.chunk_overlap_chars < self.chunk_target_chars <= self.chunk_max_chars:
            raise ValueError(
                "chunk sizes must satisfy overlap < target <= max "
                "(TENANTRY_CHUNK_OVERLAP_CHARS, _TARGET_CHARS, _MAX_CHARS)"
            )
        if self.embedder == "static" and self.embed_model_path is None:
            raise ValueError("TENANTRY_EMBEDDER=static needs TENANTRY_EMBED_MODEL_PATH")
        if self.qdrant_url is not None and self.qdrant_path is not None:
            raise ValueError("set TENANTRY_QDRANT_URL or TENANTRY_QDRANT_PATH, not both")
        return self

    @property
    def qdrant_location(self) -> Path:
        # Separate default folders: the two engines' on-disk formats are not the same.
        default = "qdrant-edge" if self.qdrant_embedded == "edge" else "qdrant"
        return self.qdrant_path or self.data_dir / default
