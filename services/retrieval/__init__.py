"""retrieval: per-tenant Qdrant collections; chunk, embed, upsert, search and delete documents."""
