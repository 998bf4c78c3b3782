"""Unlabelled secrets: long random-looking tokens with no known prefix.

Random tokens are everywhere in business text that are not secrets (UUIDs, commit
hashes, order references, base64 images, CamelCase identifiers, URLs), so a token must
pass every one of these before it counts:

* 24-200 characters of the base64/base64url alphabet, not glued to a longer word;
* upper case, lower case and digits all present (hex digests and UUIDs fail this);
* Shannon entropy near what random characters of that length would give;
* no long run of letters, and not mostly word-like runs (CamelCase identifiers);
* not part of a URL or a path (the character before it is no '/' or '.').
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

_CANDIDATE = re.compile(r"[A-Za-z0-9+/_=-]{24,200}")
_WORD_RUN = re.compile(r"[a-z]{7,}|[A-Z]{7,}")
_WORDISH = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}")
MIN_LENGTH = 24


def shannon_bits(token: str) -> float:
    counts = Counter(token)
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _expected_bits(length: int) -> float:
    """Roughly what a random base62 token of this length scores (fewer symbols than 62
    can appear in a short token, so short tokens score lower)."""
    return math.log2(min(length, 62)) * 0.84


def looks_random(token: str) -> bool:
    core = token.rstrip("=")
    if len(core) < MIN_LENGTH or "/" in core:
        return False
    if not (
        any(c.isupper() for c in core)
        and any(c.islower() for c in core)
        and sum(c.isdigit() for c in core) >= 2
    ):
        return False
    if _WORD_RUN.search(core):
        return False
    # CamelCase names ("ProjectPhoenixQ3Roadmap2024") are mostly word-like runs.
    if sum(len(m) for m in _WORDISH.findall(core)) > 0.6 * len(core):
        return False
    return shannon_bits(core) >= _expected_bits(len(core))


def high_entropy_tokens(text: str) -> Iterator[tuple[int, int]]:
    for match in _CANDIDATE.finditer(text):
        start = match.start()
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "/.\\%&?=#:@"):
            continue
        end = match.end()
        if end < len(text) and text[end].isalnum():
            continue
        if looks_random(match.group()):
            yield start, end
