from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.retrieval.adapters import QdrantStore
from services.retrieval.app import make_embedder, open_qdrant
from services.retrieval.edge import EdgeStore
from services.retrieval.embedding import HashingEmbedder
from services.retrieval.settings import RetrievalSettings

pytestmark = pytest.mark.unit


def test_edge_by_default_under_data_dir(tmp_path: Path) -> None:
    settings = RetrievalSettings(data_dir=tmp_path)
    assert settings.qdrant_url is None and settings.qdrant_embedded == "edge"
    assert settings.qdrant_location == tmp_path / "qdrant-edge"
    store = open_qdrant(settings)
    assert isinstance(store, EdgeStore) and store.pid is None  # nothing started yet
    assert RetrievalSettings(qdrant_path=tmp_path / "q").qdrant_location == tmp_path / "q"


def test_local_mode_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTRY_QDRANT_EMBEDDED", "local")
    settings = RetrievalSettings(data_dir=tmp_path)
    assert settings.qdrant_location == tmp_path / "qdrant"
    assert isinstance(open_qdrant(settings), QdrantStore)


def test_server_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("TENANTRY_QDRANT_API_KEY", "s3cr3t-key")
    settings = RetrievalSettings()
    assert str(settings.qdrant_url) == "http://qdrant:6333/"
    assert settings.qdrant_api_key is not None
    assert "s3cr3t" not in repr(settings)
    # Building the store opens no connection; that waits for the service's start hook.
    open_qdrant(settings)


@pytest.mark.parametrize(
    "overrides",
    [
        {"chunk_max_chars": 400, "chunk_target_chars": 500},
        {"chunk_overlap_chars": 500},
        {"qdrant_url": "ftp://qdrant"},
        {"qdrant_url": "http://qdrant:6333", "qdrant_path": "/tmp/q"},
        {"embed_dim": 8},
        {"qdrant_embedded": "chroma"},
        {"edge_max_open_shards": 0},
        {"edge_hnsw_ef": 8},
        {"embedder": "static", "embed_model_path": None},
        {"embedder": "bert"},
    ],
)
def test_bad_settings_fail_fast(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetrievalSettings.model_validate(overrides)


def test_placeholder_api_key_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        RetrievalSettings(
            environment="production", qdrant_url="http://qdrant:6333", qdrant_api_key="changeme"
        )


def test_hashing_is_the_default_embedder_and_loads_nothing() -> None:
    embedder = make_embedder(RetrievalSettings(embed_dim=256))
    assert isinstance(embedder, HashingEmbedder) and embedder.dim == 256


def test_a_static_model_folder_that_is_not_one_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("model2vec", reason="needs the 'semantic' extra")
    settings = RetrievalSettings(embedder="static", embed_model_path=tmp_path)
    with pytest.raises(FileNotFoundError, match="distill"):
        make_embedder(settings)
