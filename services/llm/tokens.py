"""The offline provider's tokenizer: one documented, deterministic rule.

A token is a run of word characters or a single other non-space character, i.e. the
regex ``\\w+|[^\\w\\s]`` (Unicode-aware): "Don't panic!" is 5 tokens, ``Don``, ``'``,
``t``, ``panic`` and ``!``. Claude's own tokenizer is not public, so offline counts are
not Anthropic-billable tokens; they are measured on the real text, reproducible, and
close in scale (about one token per English word), so rate limits and budgets behave
sensibly in the embedded mode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    return sum(1 for _ in TOKEN_PATTERN.finditer(text))


def count_all(texts: Iterable[str]) -> int:
    return sum(count_tokens(text) for text in texts)


def truncate(text: str, max_tokens: int) -> tuple[str, int, bool]:
    """Cut `text` after its `max_tokens`-th token. Returns (text, tokens, truncated)."""
    count = 0
    for match in TOKEN_PATTERN.finditer(text):
        count += 1
        if count == max_tokens:
            rest = text[match.end() :]
            if TOKEN_PATTERN.search(rest) is None:
                return text, count, False
            return text[: match.end()], count, True
    return text, count, False
