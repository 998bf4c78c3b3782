"""The offline fine-tunable model: small, trained with numpy on the tenant's examples.

finetune trains it and llm serves it, so it lives in shared/. No pretrained weights
exist offline, so the model is built from the examples alone:

* the prompt becomes hashed unigram and bigram features (lower-cased words),
* a multi-label logistic layer (features -> output vocabulary) learns which tokens the
  completion of such a prompt contains, trained by Adam on binary cross-entropy over
  the epochs asked for (services.finetune.training),
* a linear layer on the same features learns the completion's length (log tokens),
* trigram and bigram tables over the training completions order the chosen tokens.

Generation is greedy: each next token maximises trigram/bigram fluency plus the
prompt-conditioned token probability, with repeats penalised; the end token may win from
70 % of the predicted length on and is pushed past it. It is not a language model: it
learns the tenant's output vocabulary, format and prompt-to-answer associations, which is
what the held-out score measures.

Token-F1 (the metric): precision and recall of the answer's lower-cased tokens against
the reference completion's, as a multiset (the SQuAD definition), averaged over examples.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

TOKEN = re.compile(r"\w+|[^\w\s]")
WORD = re.compile(r"\w+")
FEATURES = 2048
MAX_VOCAB = 2_000
EOS = "<eos>"  # index 0: the end token, and the "previous token" at the start
BATCH = 16  # training (services.finetune.training): examples per Adam step
LEARNING_RATE = 0.2
PROMPT_WEIGHT = 2.0  # how much the prompt-conditioned probability counts against fluency
REPEAT_PENALTY = 3.0
_NO_SPACE_BEFORE = frozenset(".,!?;:)]}%'-/")
_NO_SPACE_AFTER = frozenset("([{$'-/")


class Cancelled(Exception):
    """Raised out of training when the progress callback says stop."""


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def detokenize(parts: Sequence[str]) -> str:
    out = ""
    for index, part in enumerate(parts):
        if (
            index
            and part[0] not in _NO_SPACE_BEFORE
            and parts[index - 1][-1] not in _NO_SPACE_AFTER
        ):
            out += " "
        out += part
    return out


def token_f1(answer: str, reference: str) -> float:
    got = Counter(t.lower() for t in tokens(answer))
    want = Counter(t.lower() for t in tokens(reference))
    common = sum((got & want).values())
    if not got or not want or not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def _bucket(feature: str) -> int:
    # crc32, not hash(): Python salts str hashes per process, and a model trained in one
    # process is served in another.
    return zlib.crc32(feature.encode()) % FEATURES


def featurize(prompts: Sequence[str]) -> Array:
    x = np.zeros((len(prompts), FEATURES), dtype=np.float32)
    for row, prompt in enumerate(prompts):
        words = WORD.findall(prompt.lower())
        for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
            x[row, _bucket(feature)] += 1.0
    np.log1p(x, out=x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-6)  # type: ignore[no-any-return]


def sigmoid(z: Array) -> Array:
    return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)


@dataclass
class TunedModel:
    vocab: list[str]
    weights: Array  # FEATURES x V
    bias: Array  # V
    length_weights: Array  # FEATURES
    length_bias: float
    bigram: Array  # V x V log-probabilities, row = previous token (0 = start)
    # Trigrams, sparse: context key (a * V + b), next token, probability; sorted by key.
    tri_keys: npt.NDArray[np.int64]
    tri_next: npt.NDArray[np.int64]
    tri_prob: Array

    def _fluency(self, prev2: int, prev: int) -> Array:
        """log P(next | prev2, prev): the trigram where that context was seen (backed off
        to the bigram by interpolation), else the bigram alone."""
        key = prev2 * len(self.vocab) + prev
        lo, hi = np.searchsorted(self.tri_keys, [key, key + 1])
        if lo == hi:
            row: Array = self.bigram[prev]
            return row
        mixed = 0.2 * np.exp(self.bigram[prev])
        mixed[self.tri_next[lo:hi]] += 0.8 * self.tri_prob[lo:hi]
        return np.log(mixed)  # type: ignore[no-any-return]

    def generate(self, prompt: str, max_tokens: int = 256) -> list[str]:
        x = featurize([prompt])[0]
        logp = np.log(sigmoid(x @ self.weights + self.bias) + 1e-6)
        target = max(
            1, min(max_tokens, round(math.exp(float(x @ self.length_weights) + self.length_bias)))
        )
        used = np.zeros(len(self.vocab), dtype=np.float32)
        out: list[str] = []
        prev2 = prev = 0
        for step in range(min(max_tokens, 2 * target)):
            fluency = self._fluency(prev2, prev)
            score = fluency + PROMPT_WEIGHT * logp - REPEAT_PENALTY * used
            score[prev] = -np.inf
            # The end may come from 70 % of the predicted length on (the length model is
            # rough), when fluency says so; past the predicted length it is pushed.
            if step < 0.7 * target:
                score[0] = -np.inf
            else:
                score[0] = fluency[0] + (5.0 if step >= target else 0.0)
            best = int(np.argmax(score))
            if best == 0:
                break
            out.append(self.vocab[best])
            used[best] += 1.0
            prev2, prev = prev, best
        return out

    def answer(self, prompt: str, max_tokens: int = 256) -> str:
        return detokenize(self.generate(prompt, max_tokens))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            vocab=np.array(self.vocab, dtype=object).astype(str),
            weights=self.weights.astype(np.float16),
            bias=self.bias,
            length_weights=self.length_weights,
            length_bias=np.array([self.length_bias], dtype=np.float32),
            bigram=self.bigram.astype(np.float16),
            tri_keys=self.tri_keys,
            tri_next=self.tri_next,
            tri_prob=self.tri_prob,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TunedModel:
        # allow_pickle=False: a model file is data, never code.
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            return cls(
                vocab=[str(v) for v in saved["vocab"]],
                weights=saved["weights"].astype(np.float32),
                bias=saved["bias"].astype(np.float32),
                length_weights=saved["length_weights"].astype(np.float32),
                length_bias=float(saved["length_bias"][0]),
                bigram=saved["bigram"].astype(np.float32),
                tri_keys=saved["tri_keys"].astype(np.int64),
                tri_next=saved["tri_next"].astype(np.int64),
                tri_prob=saved["tri_prob"].astype(np.float32),
            )


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
