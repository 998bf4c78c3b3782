"""Training the offline model (shared.tuned_model) on a tenant's examples, and
scoring it. See model.py for what the model is and how the score is defined."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.tuned_model import (
    BATCH,
    EOS,
    FEATURES,
    LEARNING_RATE,
    MAX_VOCAB,
    Array,
    Cancelled,
    Example,
    TunedModel,
    featurize,
    sigmoid,
    token_f1,
    tokens,
)


@dataclass(frozen=True)
class TrainResult:
    model: TunedModel
    losses: list[float]  # mean training loss per epoch
    tokens_seen: int  # prompt + completion tokens processed, all epochs


def _vocabulary(completions: Sequence[list[str]]) -> list[str]:
    counts = Counter(t for c in completions for t in c)
    return [EOS, *(t for t, _ in counts.most_common(MAX_VOCAB - 1))]


def _bigram(completions: Sequence[list[str]], index: dict[str, int]) -> Array:
    size = len(index)
    counts = np.full((size, size), 0.01, dtype=np.float32)  # add-k smoothing
    for completion in completions:
        ids = [0, *(index[t] for t in completion if t in index), 0]
        for a, b in itertools.pairwise(ids):
            counts[a, b] += 1.0
    return np.log(counts / counts.sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


def _trigram(
    completions: Sequence[list[str]], index: dict[str, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Array]:
    size = len(index)
    counts: Counter[tuple[int, int]] = Counter()
    for completion in completions:
        ids = [0, 0, *(index[t] for t in completion if t in index), 0]
        for a, b, c in zip(ids, ids[1:], ids[2:], strict=False):
            counts[(a * size + b, c)] += 1
    keys = sorted(counts)
    totals: Counter[int] = Counter()
    for (key, _), n in counts.items():
        totals[key] += n
    return (
        np.array([k for k, _ in keys], dtype=np.int64),
        np.array([c for _, c in keys], dtype=np.int64),
        np.array([counts[k] / totals[k[0]] for k in keys], dtype=np.float32),
    )


def train(
    examples: Sequence[Example],
    epochs: int,
    seed: int = 0,
    on_epoch: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Fit the model; `on_epoch(epoch, loss)` returning False stops with Cancelled."""
    if not examples:
        raise ValueError("no training examples")
    rng = np.random.default_rng(seed)
    completions = [tokens(e.completion) for e in examples]
    vocab = _vocabulary(completions)
    index = {t: i for i, t in enumerate(vocab)}
    x = featurize([e.prompt for e in examples])
    y = np.zeros((len(examples), len(vocab)), dtype=np.float32)
    for row, completion in enumerate(completions):
        y[row, [index[t] for t in completion if t in index]] = 1.0
    log_len = np.log(np.array([max(1, len(c)) for c in completions], dtype=np.float32))

    # Start from the base rates so the first steps learn the prompt, not the priors.
    rate = np.clip(y.mean(axis=0), 1e-3, 1 - 1e-3)
    params = {
        "w": np.zeros((FEATURES, len(vocab)), dtype=np.float32),
        "b": np.log(rate / (1 - rate)).astype(np.float32),
        "lw": np.zeros(FEATURES, dtype=np.float32),
        "lb": np.array([log_len.mean()], dtype=np.float32),
    }
    adam_m = {k: np.zeros_like(v) for k, v in params.items()}
    adam_v = {k: np.zeros_like(v) for k, v in params.items()}
    step, losses = 0, []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(examples))
        total = 0.0
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            xb, yb = x[rows], y[rows]
            p = sigmoid(xb @ params["w"] + params["b"])
            total += float(
                -(yb * np.log(p + 1e-7) + (1 - yb) * np.log(1 - p + 1e-7)).sum(axis=1).sum()
            )
            grad_z = (p - yb) / len(rows)
            length_err = (xb @ params["lw"] + params["lb"][0] - log_len[rows]) / len(rows)
            grads = {
                "w": xb.T @ grad_z,
                "b": grad_z.sum(axis=0),
                "lw": xb.T @ length_err,
                "lb": np.array([length_err.sum()], dtype=np.float32),
            }
            step += 1
            for key, grad in grads.items():
                adam_m[key] = 0.9 * adam_m[key] + 0.1 * grad
                adam_v[key] = 0.999 * adam_v[key] + 0.001 * grad * grad
                m_hat = adam_m[key] / (1 - 0.9**step)
                v_hat = adam_v[key] / (1 - 0.999**step)
                params[key] -= (LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(np.float32)
        losses.append(total / len(examples))
        if on_epoch is not None and not on_epoch(epoch, losses[-1]):
            raise Cancelled
    tri_keys, tri_next, tri_prob = _trigram(completions, index)
    model = TunedModel(
        vocab=vocab,
        weights=params["w"],
        bias=params["b"],
        length_weights=params["lw"],
        length_bias=float(params["lb"][0]),
        bigram=_bigram(completions, index),
        tri_keys=tri_keys,
        tri_next=tri_next,
        tri_prob=tri_prob,
    )
    seen = sum(len(tokens(e.prompt)) + len(c) for e, c in zip(examples, completions, strict=True))
    return TrainResult(model=model, losses=losses, tokens_seen=seen * epochs)


def mean_f1(answer: Callable[[str], str], examples: Sequence[Example]) -> float:
    if not examples:
        return 0.0
    return sum(token_f1(answer(e.prompt), e.completion) for e in examples) / len(examples)


def split(
    examples: Sequence[Example], seed: int, share: float = 0.1
) -> tuple[list[Example], list[Example]]:
    """(train, held_out): a seeded shuffle; nothing held out below 20 examples."""
    order = np.random.default_rng(seed).permutation(len(examples))
    held = int(len(examples) * share) if len(examples) >= 20 else 0
    return [examples[i] for i in order[held:]], [examples[i] for i in order[:held]]
