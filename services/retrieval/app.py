"""retrieval's composition root: the embedder and the Qdrant-backed store."""

from __future__ import annotations

from faststream.nats import NatsBroker

from services.retrieval.adapters import QdrantStore, VectorStore
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.edge import EdgeStore
from services.retrieval.embedding import Embedder, HashingEmbedder
from services.retrieval.handlers import HANDLERS, SERVICE, Deps
from services.retrieval.settings import RetrievalSettings
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import make_broker, publish_event
from shared.canary import Canaries
from shared.logging import get_logger
from shared.messages.leakage import FingerprintsChanged
from shared.service import Service, compose

log = get_logger("tenantry.retrieval")


def open_qdrant(settings: RetrievalSettings) -> QdrantStore | EdgeStore:
    """The store the settings describe: a server if a URL is set, else embedded (Qdrant
    Edge shards by default, or local mode). Nothing is opened until `open()`."""
    if settings.qdrant_url is not None:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantStore.server(
            str(settings.qdrant_url).rstrip("/"), api_key=key, timeout_s=settings.qdrant_timeout_s
        )
    if settings.qdrant_embedded == "edge":
        return EdgeStore(
            settings.qdrant_location,
            max_open=settings.edge_max_open_shards,
            hnsw_ef=settings.edge_hnsw_ef,
        )
    return QdrantStore.local(settings.qdrant_location)


def make_embedder(settings: RetrievalSettings) -> Embedder:
    """The embedder the settings name; the semantic ones load their model here (once,
    at start-up), from files installed with the 'semantic' extra, never downloaded."""
    if settings.embedder == "minilm":
        from services.retrieval.semantic import MiniLMEmbedder

        return MiniLMEmbedder()
    if settings.embedder == "static":
        from services.retrieval.semantic import StaticEmbedder

        assert settings.embed_model_path is not None  # the settings validator says so
        return StaticEmbedder(settings.embed_model_path)
    return HashingEmbedder(settings.embed_dim)


async def bootstrap(
    settings: RetrievalSettings,
    broker: NatsBroker,
    *,
    store: VectorStore | None = None,
    embedder: Embedder | None = None,
) -> Deps:
    """Open the vector store (unless one is passed in) and the embedder, and return
    retrieval's Deps."""
    embedder = embedder or make_embedder(settings)
    owns_store = store is None
    if store is None:
        qdrant = open_qdrant(settings)
        await qdrant.open()
        store = qdrant
        _warn_unserved_local_data(settings)
        log.info(
            "retrieval.store_opened",
            mode="server" if settings.qdrant_url else settings.qdrant_embedded,
            embedder=embedder.name,
        )

    async def publish(event: FingerprintsChanged) -> None:
        await publish_event(broker, event, subjects.fingerprints_event(event.tenant_id))

    secret = settings.canary_secret.get_secret_value().encode()
    return Deps(
        store=store,
        embedder=embedder,
        chunking=ChunkingConfig(
            max_chars=settings.chunk_max_chars,
            target_chars=settings.chunk_target_chars,
            overlap_chars=settings.chunk_overlap_chars,
        ),
        trail=AuditTrail(broker, SERVICE),
        publish=publish,
        canaries=Canaries(secret) if settings.plant_canaries else None,
        owns_store=owns_store,
    )


def _warn_unserved_local_data(settings: RetrievalSettings) -> None:
    old_local = settings.data_dir / "qdrant"
    if settings.qdrant_embedded == "edge" and settings.qdrant_path is None:
        if old_local.is_dir() and any(old_local.iterdir()):
            # Edge became the embedded default; local mode's data is not read.
            log.warning(
                "retrieval.local_mode_data_not_served",
                folder=str(old_local),
                hint="TENANTRY_QDRANT_EMBEDDED=local serves it; or re-ingest",
            )


def make_service(
    settings: RetrievalSettings | None = None,
    *,
    store: VectorStore | None = None,
    embedder: Embedder | None = None,
) -> Service:
    settings = settings or RetrievalSettings()
    broker = make_broker(settings, SERVICE)
    return compose(
        SERVICE,
        settings,
        broker,
        HANDLERS,
        lambda: bootstrap(settings, broker, store=store, embedder=embedder),
    )
