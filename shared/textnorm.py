"""Words, stop words and stems: the one English text normaliser of the platform.

Used by retrieval's hashing embedder and by the llm's offline extractive answerer, so
both see a word the same way. Stemming is Snowball's English (Porter2) stemmer from
PyStemmer, the Snowball project's C implementation, rather than a hand-written suffix
strip: "refunds", "refunded" and "refunding" all become "refund".
"""

from __future__ import annotations

import re
import threading
import unicodedata

import Stemmer

_WORD = re.compile(r"[^\W_]+")

# Function words carry no topic; leaving them out keeps term lists about content.
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up us very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)

# A Stemmer object keeps a work buffer: one per thread (the embedder runs in a worker
# thread for big batches while the event loop may embed a query).
_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    stemmer: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if stemmer is None:
        # No internal cache: callers stem each distinct word once per batch, and an
        # uncached stem (~0.3 µs) is faster than a miss in its cache (~1 µs).
        stemmer = _local.stemmer = Stemmer.Stemmer("english", 0)
    return stemmer


def words(text: str) -> list[str]:
    """Case-folded words (runs of letters and digits) of NFKC-normalised text, in order."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_words(text: str) -> list[str]:
    """`words` without the stop words."""
    return [w for w in words(text) if w not in STOP_WORDS]


def stem(word: str) -> str:
    """Snowball English stem of one case-folded word."""
    result: str = _stemmer().stemWord(word)
    return result


def stems(words: list[str]) -> list[str]:
    """Snowball English stems of many case-folded words, in one call."""
    result: list[str] = _stemmer().stemWords(words)
    return result
