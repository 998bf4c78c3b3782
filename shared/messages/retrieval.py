"""retrieval's messages: ingest, search and delete within one tenant's collection."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.audit import AuditRecorded
from shared.messages.base import Envelope, Reply

DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"


class Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    document_id: str = Field(pattern=DOCUMENT_ID_PATTERN, description="Tenant-chosen document id.")
    text: str = Field(min_length=1, max_length=2_000_000, description="Plain text of the document.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Free-form string metadata.")


class IngestDocuments(Envelope):
    documents: list[Document] = Field(
        min_length=1, max_length=256, description="Documents to (re)index."
    )


class DocumentsIngested(Reply):
    documents: int = Field(default=0, ge=0, description="Documents indexed.")
    chunks: int = Field(default=0, ge=0, description="Chunks written.")


class SearchChunks(Envelope):
    query: str = Field(min_length=1, max_length=32_000, description="Text to search for.")
    top_k: int = Field(default=4, ge=1, le=50, description="How many chunks to return.")
    audit_by_caller: bool = Field(
        default=False,
        description="The caller records this search's data-access row inside its own audit "
        "event (a request's trail): the row comes back in the reply instead of being "
        "published.",
    )


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(description="Owner of the chunk, as stored with it.")
    document_id: str = Field(description="Document the chunk belongs to.")
    chunk_id: str = Field(description="Stable chunk id.")
    text: str = Field(description="Chunk text.")
    score: float = Field(default=0.0, description="Similarity to the query.")


class ChunksFound(Reply):
    chunks: list[Chunk] = Field(default_factory=list, description="Best chunks first.")
    audit: AuditRecorded | None = Field(
        default=None, description="The search's audit row, when the caller records it."
    )


class DeleteDocument(Envelope):
    document_id: str = Field(pattern=DOCUMENT_ID_PATTERN, description="Document to remove.")


class DocumentDeleted(Reply):
    chunks_deleted: int = Field(default=0, ge=0, description="Chunks removed.")


class DeleteCollection(Envelope):
    """Drop the tenant's whole collection (offboarding)."""


class CollectionDeleted(Reply):
    existed: bool = Field(default=False, description="Whether the collection existed.")
    chunks_deleted: int = Field(default=0, ge=0, description="Chunks it held.")
