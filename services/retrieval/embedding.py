"""Embedders: text to unit-length vectors. The default is lexical, offline and fast.

HashingEmbedder hashes three kinds of feature into one fixed-width vector (the
"hashing trick", with a sign bit so collisions cancel out on average instead of piling up):

* word stems (Snowball English, shared.textnorm), so "refunds" and "refund" meet;
* bigrams of neighbouring content-word stems, which reward matching phrases;
* character 3- and 4-grams of each word (fastText style), which connect inflections,
  compounds and typos that the stemmer misses.

Term frequency is sublinear (1 + log tf), so a word repeated ten times does not
drown the rest. A whole batch is hashed at once in numpy: Python only splits the texts
into words and numbers them; the features of every distinct word, their hashes and the
sums into rows are array operations. The hash is a 64-bit polynomial over code points
finished with MurmurHash3's fmix64, never Python's `hash()`, which is salted per
process: vectors must be identical across replicas and restarts.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shared import textnorm

Vectors = npt.NDArray[np.float32]
_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

# Texts embedded together: bounds the scratch arrays (rows x dim float64) of one pass.
_BATCH = 512
_PRIME = np.uint64(0x100000001B3)  # FNV's 64-bit prime, the polynomial's base
_SEED_STEM = np.uint64(0x9E3779B97F4A7C15)
_SEED_GRAM = np.uint64(0xC2B2AE3D27D4EB4F)
_SEED_BIGRAM = np.uint64(0x165667B19E3779F9)
_STOP_IDS = dict.fromkeys(textnorm.STOP_WORDS, -1)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows, one per text, all of width `dim`."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> Vectors: ...


class HashingEmbedder:
    def __init__(
        self,
        dim: int = 1024,
        *,
        word_weight: float = 1.0,
        bigram_weight: float = 0.3,
        char_weight: float = 1.0,
    ) -> None:
        if dim < 16:
            raise ValueError("dim must be at least 16")
        self._dim = dim
        self._word_weight = word_weight
        self._bigram_weight = bigram_weight
        self._char_weight = char_weight

    @property
    def name(self) -> str:
        # v2: Snowball stems and the numpy hash. v1 vectors (hand-written stemmer,
        # blake2b) are not comparable with these; the store refuses to mix the two.
        return f"hashing-v2-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), _BATCH):
            self._embed_batch(texts[start : start + _BATCH], out[start : start + _BATCH])
        return out

    def _embed_batch(self, texts: list[str], out: Vectors) -> None:
        # 1. Words, numbered in order of first appearance across the batch (in C: each
        # new word is numbered by its position, the stop words are pre-set to -1).
        vocab = dict(_STOP_IDS)
        numbered: list[int] = []
        counts: list[int] = []
        for text in texts:
            found = textnorm.words(text)
            numbered += map(
                vocab.setdefault, found, range(len(numbered), len(numbered) + len(found))
            )
            counts.append(len(found))
        if len(vocab) == len(_STOP_IDS):
            return  # only stop words or punctuation: zero rows
        first_seen = np.array(numbered, dtype=np.int64)
        content = first_seen >= 0
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)[content]
        tokens = np.unique(first_seen[content], return_inverse=True)[1]
        words = list(vocab)[len(_STOP_IDS) :]
        stems = textnorm.stems(words)

        # 2. Every distinct word's features, contiguous per word: its stem, then its
        # character 3- and 4-grams (fastText style, on "<word>").
        feature_hash, feature_weight, per_word = self._word_features(words, stems)
        first = np.cumsum(per_word) - per_word

        # 3. Each (row, word) once, weighted 1 + log(tf), spread over the word's features.
        pair_row, pair_word, pair_tf = _grouped(rows, tokens, len(words))
        take = per_word[pair_word]
        pair = np.repeat(np.arange(len(pair_word)), take)
        feature = np.repeat(first[pair_word], take) + _ranks(take)
        positions = [pair_row[pair] * self._dim + self._bucket(feature_hash[feature])]
        values = [(1.0 + np.log(pair_tf))[pair] * feature_weight[feature]]

        # 4. Bigrams of neighbouring content-word stems within a text.
        same_row = rows[1:] == rows[:-1]
        if same_row.any():
            stem_hash, stem_number = np.unique(feature_hash[first], return_inverse=True)
            token_stems = stem_number[tokens]
            key = token_stems[:-1][same_row] * len(stem_hash) + token_stems[1:][same_row]
            b_row, b_key, b_tf = _grouped(rows[1:][same_row], key, len(stem_hash) ** 2)
            first_stem, second_stem = np.divmod(b_key, len(stem_hash))
            hashes = _fmix64(
                stem_hash[first_stem] * _PRIME + (stem_hash[second_stem] ^ _SEED_BIGRAM)
            )
            positions.append(b_row * self._dim + self._bucket(hashes))
            values.append(_signed(hashes, (1.0 + np.log(b_tf)) * self._bigram_weight))

        summed = np.bincount(
            np.concatenate(positions), np.concatenate(values), minlength=out.size
        ).reshape(out.shape)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        np.divide(summed, norms, out=summed, where=norms > 0)
        out[:] = summed

    def _bucket(self, hashes: _U64) -> _I64:
        return (hashes % np.uint64(self._dim)).astype(np.int64)

    def _word_features(self, words: list[str], stems: list[str]) -> tuple[_U64, _F64, _I64]:
        """Per word: 1 + its n-gram count features, as hashes and signed weights."""
        stem_len = np.fromiter(map(len, stems), np.int64, len(stems))
        padded_len = np.fromiter(map(len, words), np.int64, len(words)) + 2
        # One string, the stems then "<word><word>...": the features are slices of it.
        codes = "".join(stems) + "<" + "><".join(words) + ">"
        stem_start = np.cumsum(stem_len) - stem_len
        word_start = int(stem_len.sum()) + np.cumsum(padded_len) - padded_len
        grams3 = padded_len - 2  # >= 1: "<a>" has one
        grams = grams3 + np.maximum(padded_len - 3, 0)
        per_word = grams + 1

        def each(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.repeat(x, per_word)

        rank = _ranks(per_word) - 1  # -1: the stem, then the n-grams in order
        is_stem = rank < 0
        is_3 = rank < each(grams3)
        gram_start = each(word_start) + np.where(is_3, rank, rank - each(grams3))
        start = np.where(is_stem, each(stem_start), gram_start)
        length = np.where(is_stem, each(stem_len), np.where(is_3, 3, 4))
        seed = np.where(is_stem, _SEED_STEM, _SEED_GRAM)
        hashes = _slice_hashes(codes, start, length, seed)
        # The n-grams share one weight however long the word is, so long words do not
        # outweigh short ones.
        weight = np.where(is_stem, self._word_weight, each(self._char_weight / np.sqrt(grams)))
        return hashes, _signed(hashes, weight), per_word


def hash_strings(strings: list[str], seed: np.uint64) -> _U64:
    """The features' hash, of whole strings (for tests and tools)."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    starts = np.cumsum(lengths) - lengths
    return _slice_hashes("".join(strings), starts, lengths, seed)


def _slice_hashes(text: str, start: _I64, length: _I64, seed: np.uint64 | _U64) -> _U64:
    """fmix64(polynomial hash of text[start:start+length] + length * PRIME + seed).

    The polynomial is sum(code[k] * PRIME ** (end - 1 - k)) modulo 2 ** 64. PRIME is odd,
    so it has an inverse INV modulo 2 ** 64, and one prefix sum of code[k] * INV ** k
    gives every slice's polynomial as (prefix[end] - prefix[start]) * PRIME ** (end - 1)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    powers, inverses = _power_tables(len(codes) + 1)
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes * inverses[: len(codes)], out=prefix[1:])
    end = start + length
    polynomial = (prefix[end] - prefix[start]) * powers[np.maximum(end - 1, 0)]
    return _fmix64(polynomial + length.astype(np.uint64) * _PRIME + seed)


_tables: tuple[_U64, _U64] = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))


def _power_tables(count: int) -> tuple[_U64, _U64]:
    """PRIME ** k and INV ** k for k < count (at least), modulo 2 ** 64; grown on demand
    and shared (replaced whole, never written in place, so threads may read it)."""
    global _tables
    tables = _tables
    if len(tables[0]) < count:
        size = max(count, 2 * len(tables[0]), 1 << 16)
        built = []
        for base in (int(_PRIME), pow(int(_PRIME), -1, 1 << 64)):
            steps = np.full(size, base, dtype=np.uint64)
            steps[0] = 1
            built.append(np.multiply.accumulate(steps))
        tables = _tables = (built[0], built[1])
    return tables


def _signed(hashes: _U64, weight: _F64) -> _F64:
    """The weight, negated when the hash's top bit is clear."""
    return np.where(hashes >> np.uint64(63), weight, -weight)


def _fmix64(h: _U64) -> _U64:
    """MurmurHash3's finaliser: every input bit affects every output bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _ranks(counts: _I64) -> _I64:
    """0..c-1 for each c in counts, concatenated."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _grouped(groups: _I64, keys: _I64, key_space: int) -> tuple[_I64, _I64, _I64]:
    """Distinct (group, key) pairs and how often each occurs."""
    combined, tf = np.unique(groups * key_space + keys, return_counts=True)
    return combined // key_space, combined % key_space, tf
