"""Embedders: text to unit-length vectors. The default is lexical, offline and fast.

HashingEmbedder hashes three kinds of feature into one fixed-width vector (the
"hashing trick", with a sign bit so collisions cancel out on average instead of piling up):

* word unigrams, lightly stemmed, so "refunds" and "refund" meet;
* bigrams of neighbouring content words, which reward matching phrases;
* character 3- and 4-grams of each word (fastText style), which connect inflections,
  compounds and typos that the stemmer misses.

Term frequency is sublinear (1 + log tf), so a word repeated ten times does not
drown the rest. Hashes come from blake2b, never Python's `hash()`, which is salted per
process: vectors must be identical across replicas and restarts. Per-word features
are cached, so embedding a query costs a few dictionary look-ups and one bincount.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

_WORD = re.compile(r"[^\W_]+")

# Function words carry no topic; leaving them out keeps vectors about content.
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows, one per text, all of width `dim`."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> Vectors: ...


def stem(word: str) -> str:
    """A deliberately light English stemmer: plurals and common verb endings only."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # "stopped" -> "stopp" -> "stop", "running" -> "run"
            break
    return word.removesuffix("e") if len(word) > 4 else word


class HashingEmbedder:
    def __init__(
        self,
        dim: int = 1024,
        *,
        word_weight: float = 1.0,
        bigram_weight: float = 0.3,
        char_weight: float = 1.0,
        cache_size: int = 100_000,
    ) -> None:
        if dim < 16:
            raise ValueError("dim must be at least 16")
        self._dim = dim
        self._word_weight = word_weight
        self._bigram_weight = bigram_weight
        self._char_weight = char_weight
        # Per-instance caches (not module-level) so two embedders of different widths
        # never share entries.
        self._word_features = lru_cache(maxsize=cache_size)(self._compute_word_features)
        self._feature = lru_cache(maxsize=cache_size)(self._hash)

    @property
    def name(self) -> str:
        return f"hashing-v1-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._embed_one(text)
        return out

    def _embed_one(self, text: str) -> Vectors:
        words = [
            w
            for w in _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
            if w not in STOP_WORDS
        ]
        indices: list[npt.NDArray[np.int64]] = []
        weights: list[npt.NDArray[np.float64]] = []
        for word, tf in Counter(words).items():
            idx, val = self._word_features(word)
            indices.append(idx)
            weights.append(val * (1.0 + math.log(tf)))
        stems = [stem(w) for w in words]
        bigrams = Counter(itertools.pairwise(stems))
        if bigrams:
            pairs = [self._feature(f"b:{a} {b}") for a, b in bigrams]
            indices.append(np.fromiter((i for i, _ in pairs), np.int64, len(pairs)))
            weights.append(
                np.fromiter(
                    (
                        s * self._bigram_weight * (1.0 + math.log(tf))
                        for (_, s), tf in zip(pairs, bigrams.values(), strict=True)
                    ),
                    np.float64,
                    len(pairs),
                )
            )
        if not indices:
            return np.zeros(self._dim, dtype=np.float32)
        vector = np.bincount(np.concatenate(indices), np.concatenate(weights), minlength=self._dim)
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm > 0 else vector).astype(np.float32)

    def _compute_word_features(
        self, word: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """One word's stem feature plus its character n-grams, scaled to their weights."""
        grams = _char_ngrams(word)
        features = [self._feature(f"w:{stem(word)}")] + [self._feature(f"c:{g}") for g in grams]
        idx = np.fromiter((i for i, _ in features), np.int64, len(features))
        sign = np.fromiter((s for _, s in features), np.float64, len(features))
        # The n-grams share one weight however long the word is, so long words do not
        # outweigh short ones.
        scale = np.full(len(features), self._char_weight / math.sqrt(max(len(grams), 1)))
        scale[0] = self._word_weight
        weights = sign * scale
        # Cached and shared between calls (and threads): make accidental edits fail loudly.
        idx.flags.writeable = False
        weights.flags.writeable = False
        return idx, weights

    def _hash(self, feature: str) -> tuple[int, float]:
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        return digest % self._dim, 1.0 if digest >> 63 else -1.0


def _char_ngrams(word: str) -> list[str]:
    padded = f"<{word}>"
    return [padded[i : i + n] for n in (3, 4) for i in range(len(padded) - n + 1)]
