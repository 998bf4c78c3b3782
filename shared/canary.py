"""Canary tokens: a per-tenant marker planted in every chunk retrieval stores.

The token is an HMAC of the tenant id under a platform secret, so retrieval (which
plants it) and leakage (which looks for it) derive the same token without exchanging
any, and nobody without the secret can forge another tenant's. It sits at the end of
each stored chunk's text, so it travels wherever that text goes: into a prompt, a model
provider, a cache, and back out in an answer. Seen in another tenant's traffic it proves
a cross-tenant path, whether or not any name or quoted sentence survived.

A tenant's own canary is expected in its prompts (its context carries it); it is cut
out of its responses, so a client never sees it.

The scheme lives in shared/ because both sides apply it; the detector that looks for
foreign canaries is leakage's (services.leakage.canary).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import lru_cache

PREFIX = "tcy-canary-"
PATTERN = re.compile(PREFIX + r"[a-z2-7]{16}(?![a-z0-9])")
# How the token is appended to stored text: its own line, bracketed, so sentence
# splitters treat it as a separate fragment and never glue it into a quoted sentence.
_SUFFIX = "\n[{token}]"
_SUFFIX_PATTERN = re.compile(r"\n?\[" + PATTERN.pattern + r"\]")


class Canaries:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the canary secret must not be empty")
        self._secret = secret
        self.token = lru_cache(maxsize=100_000)(self._token)

    def _token(self, tenant_id: str) -> str:
        digest = hmac.new(self._secret, b"tenantry-canary:" + tenant_id.encode(), hashlib.sha256)
        return PREFIX + base64.b32encode(digest.digest()[:10]).decode().lower()

    def plant(self, tenant_id: str, text: str) -> str:
        return text + _SUFFIX.format(token=self.token(tenant_id))

    def strip_own(self, tenant_id: str, text: str) -> str:
        """`text` without the tenant's own canaries (and their brackets)."""
        own = self.token(tenant_id)
        if own not in text:
            return text
        cut = _SUFFIX_PATTERN.sub(lambda m: "" if own in m.group() else m.group(), text)
        return cut.replace(own, "")
