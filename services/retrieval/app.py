"""retrieval's bootstrap: settings, broker, embedder, Qdrant-backed store, router."""

from __future__ import annotations

from services.retrieval.adapters import QdrantStore, VectorStore
from services.retrieval.chunking import ChunkingConfig
from services.retrieval.edge import EdgeStore
from services.retrieval.embedding import Embedder, HashingEmbedder
from services.retrieval.handlers import SERVICE, Deps, build_router
from services.retrieval.settings import RetrievalSettings
from shared import subjects
from shared.audit import AuditTrail
from shared.bus import make_broker, publish_event
from shared.canary import Canaries
from shared.logging import get_logger
from shared.messages.leakage import FingerprintsChanged
from shared.service import Service

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
        return EdgeStore(settings.qdrant_location, max_open=settings.edge_max_open_shards)
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


def bootstrap(
    settings: RetrievalSettings | None = None,
    *,
    store: VectorStore | None = None,
    embedder: Embedder | None = None,
) -> Service:
    settings = settings or RetrievalSettings()
    broker = make_broker(settings, SERVICE)

    async def publish(event: FingerprintsChanged) -> None:
        await publish_event(broker, event, subjects.fingerprints_event(event.tenant_id))

    secret = settings.canary_secret.get_secret_value().encode()
    deps = Deps(
        store=store,  # type: ignore[arg-type]  # opened in on_start when not given
        embedder=embedder or make_embedder(settings),
        chunking=ChunkingConfig(
            max_chars=settings.chunk_max_chars,
            target_chars=settings.chunk_target_chars,
            overlap_chars=settings.chunk_overlap_chars,
        ),
        trail=AuditTrail(broker, SERVICE),
        publish=publish,
        canaries=Canaries(secret) if settings.plant_canaries else None,
    )
    service = Service(SERVICE, settings, broker)
    owned: list[QdrantStore | EdgeStore] = []

    async def open_store() -> None:
        if deps.store is None:
            qdrant = open_qdrant(settings)
            await qdrant.open()
            owned.append(qdrant)
            deps.store = qdrant
            old_local = settings.data_dir / "qdrant"
            if settings.qdrant_embedded == "edge" and settings.qdrant_path is None:
                if old_local.is_dir() and any(old_local.iterdir()):
                    # Edge became the embedded default; local mode's data is not read.
                    log.warning(
                        "retrieval.local_mode_data_not_served",
                        folder=str(old_local),
                        hint="TENANTRY_QDRANT_EMBEDDED=local serves it; or re-ingest",
                    )
            log.info(
                "retrieval.store_opened",
                mode="server" if settings.qdrant_url else settings.qdrant_embedded,
                embedder=deps.embedder.name,
            )

    async def close_store() -> None:
        # Only close what we opened; a store passed in belongs to the caller. Closing
        # releases the embedded folder (local mode's lock, or the Edge worker) for the next one.
        while owned:
            await owned.pop().close()

    service.on_start.append(open_store)
    service.on_stop.append(close_store)
    broker.include_router(build_router(deps))
    return service
