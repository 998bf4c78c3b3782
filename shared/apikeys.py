"""API key format and checking, shared by access (which issues keys) and api (which
checks them on every HTTP request).

A key reads `tnty_<tenant>_<key_id>_<secret>`. The tenant and key id in it only say
where to look: the key is accepted when the SHA-256 of the whole key equals the hash
stored at `<tenant>.<key_id>` in the keys bucket, so editing the tenant part of a key
finds nothing. Revoking deletes that entry, and the next request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from pydantic import BaseModel

from shared.tenancy import is_valid_tenant_id

PREFIX = "tnty"
MAX_KEY_LENGTH = 200


class StoredKey(BaseModel):
    tenant_id: str
    key_id: str
    name: str
    sha256: str
    created_at: datetime
    created_by: str
    hint: str


def new_key(tenant_id: str) -> tuple[str, str]:
    """(key_id, key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}_{tenant_id}_{key_id}_{secrets.token_urlsafe(32)}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def kv_key(tenant_id: str, key_id: str) -> str:
    return f"{tenant_id}.{key_id}"


def locate(key: str) -> tuple[str, str] | None:
    """(tenant_id, key_id) a presented key claims, or None if it is not shaped like one."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    parts = key.split("_", 3)
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    _, tenant_id, key_id, secret = parts
    if not is_valid_tenant_id(tenant_id) or len(key_id) != 12 or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return tenant_id, key_id


def matches(key: str, stored: StoredKey) -> bool:
    return hmac.compare_digest(digest(key), stored.sha256)
