"""Content fingerprints: hashed word shingles, winnowed. One scheme, used on both sides.

retrieval fingerprints every document it ingests (and publishes the result); leakage
hashes the text it scans the same way and looks the hashes up. Both import this module
(in shared/, since services never import each other), so the two can never drift apart.

* Words are runs of letters/digits in the case-folded text, so punctuation, spacing
  and case changes do not hide a quote.
* A shingle is K consecutive words; its hash is a polynomial over 64-bit word hashes
  (blake2b, stable across processes, unlike Python's salted `hash()`), then mixed.
* Winnowing (Schleimer, Wilkerson, Aiken 2003) keeps the smallest hash of every window
  of W shingles: about 2/(W+1) of them, and any shared run of K+W-1 words is guaranteed
  to share at least one stored fingerprint. The scanner checks every shingle of the
  scanned text, so it finds each stored one a quote contains.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

K = 8  # words per shingle: long enough that ordinary phrases rarely repeat across tenants
W = 4  # winnowing window: keeps ~40% of shingles; any 11-word overlap leaves a trace

Hashes = npt.NDArray[np.uint64]
_WORD = re.compile(r"[^\W_]+")
_MULT = np.uint64(0x100000001B3)  # FNV prime: odd, so the polynomial mixes every word in
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def fold(text: str) -> str:
    """Lower-case without changing length (a few characters, e.g. 'İ', lower to two), so
    offsets in the folded text are offsets in the original."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(low := c.lower()) != 1 else low for c in text)


@lru_cache(maxsize=200_000)
def word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Shingles:
    """Every shingle hash of a text, with the character span each one covers."""

    hashes: Hashes
    starts: npt.NDArray[np.int64]  # start offset of the shingle's first word
    ends: npt.NDArray[np.int64]  # end offset of its last word


def shingles(text: str) -> Shingles:
    words = list(_WORD.finditer(fold(text)))
    n = len(words) - K + 1
    if n <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return Shingles(np.zeros(0, dtype=np.uint64), empty, empty)
    hashed = np.fromiter((word_hash(m.group()) for m in words), dtype=np.uint64, count=len(words))
    acc = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for j in range(K):
            acc = acc * _MULT + hashed[j : j + n]
        acc ^= acc >> np.uint64(30)  # splitmix64 finaliser: spreads the bits evenly
        acc *= _MIX1
        acc ^= acc >> np.uint64(27)
        acc *= _MIX2
        acc ^= acc >> np.uint64(31)
    starts = np.fromiter((m.start() for m in words[:n]), dtype=np.int64, count=n)
    ends = np.fromiter((m.end() for m in words[K - 1 :]), dtype=np.int64, count=n)
    return Shingles(acc, starts, ends)


def winnow(hashes: Hashes, window: int = W) -> Hashes:
    """The distinct fingerprints winnowing selects, sorted."""
    if len(hashes) <= window:
        return np.unique(hashes)
    windows = np.lib.stride_tricks.sliding_window_view(hashes, window)
    picked = windows.argmin(axis=1) + np.arange(len(windows))
    return np.unique(hashes[picked])


def fingerprints(text: str) -> Hashes:
    """What retrieval stores for a document: its winnowed shingle hashes."""
    return winnow(shingles(text).hashes)


def pack(hashes: Hashes) -> str:
    """Hashes as FingerprintsChanged carries them: little-endian uint64s, base64."""
    return base64.b64encode(hashes.astype("<u8").tobytes()).decode()


def unpack(raw: bytes) -> Hashes:
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)
