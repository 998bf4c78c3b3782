"""The offline provider: an honest extractive answer from the tenant's own passages.

No language model is involved. The answer quotes the context sentences that best
overlap the question (IDF-weighted term overlap), says plainly that it is extractive,
and says the documents hold no answer when nothing overlaps. Token counts come from
the one tokenizer in `tokens`, applied to the real input and output.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from services.llm import tokens
from services.llm.providers import Completion
from shared import textnorm
from shared.messages.completions import Usage
from shared.messages.llm import InvokeModel
from shared.offline_text import NO_ANSWER

MODEL = "offline-extractive"
PROVIDER = "offline"
MAX_SENTENCES = 3
# A sentence must carry this share of the question's (IDF-weighted) terms to count as
# relevant, and kept sentences must score at least KEEP_RATIO of the best one, so a
# single shared common word does not pass for an answer.
MIN_COVERAGE = 0.2
KEEP_RATIO = 0.5

HEADER = (
    "Extractive answer (offline mode, no language model was used): the most relevant "
    "sentences from your organisation's documents, quoted as written."
)

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*")
_QUESTION_MARKER = re.compile(r"question\s*:", re.IGNORECASE)
# Beyond the shared stop words: how questions are phrased, not what they are about.
_STOPWORDS = textnorm.STOP_WORDS | {"please", "tell", "know", "give", "explain", "describe"}


@dataclass(frozen=True)
class Sentence:
    text: str
    document_id: str
    terms: frozenset[str]


def terms_of(text: str) -> list[str]:
    """Lower-cased, stemmed content words (stopwords and single letters dropped)."""
    return textnorm.stems(
        [w for w in textnorm.words(text) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]
    )


def question_of(request: InvokeModel) -> str:
    """The question: the last user message, minus any passages the caller pasted into it.

    The gateway puts the passages and a trailing "Question: ..." into one user message;
    removing the passage texts (and anything before the marker) keeps the passages from
    trivially matching themselves.
    """
    users = [m.content for m in request.messages if m.role == "user"]
    text = users[-1] if users else request.messages[-1].content
    for chunk in request.context:
        if chunk.text:
            text = text.replace(chunk.text, " ")
    markers = list(_QUESTION_MARKER.finditer(text))
    return text[markers[-1].end() :] if markers else text


def sentences_of(request: InvokeModel) -> list[Sentence]:
    out = []
    for chunk in request.context:
        for raw in _SENTENCE_BREAK.split(chunk.text):
            text = " ".join(raw.split())
            found = frozenset(terms_of(text))
            if found and tokens.count_tokens(text) >= 3:
                out.append(Sentence(text=text, document_id=chunk.document_id, terms=found))
    return out


def pick(question: str, sentences: list[Sentence]) -> list[Sentence]:
    """The best-overlapping sentences, best first; empty when none is relevant."""
    wanted = set(terms_of(question))
    if not wanted or not sentences:
        return []
    df = Counter(term for s in sentences for term in s.terms if term in wanted)
    n = len(sentences)
    idf = {t: math.log(1 + (n + 1) / (df[t] + 0.5)) for t in wanted}
    total = sum(idf.values())
    scored = []
    for index, sentence in enumerate(sentences):
        score = sum(idf[t] for t in sentence.terms & wanted)
        if score > 0 and score / total >= MIN_COVERAGE:
            scored.append((score, -index, sentence))
    scored.sort(reverse=True)
    if not scored:
        return []
    best = scored[0][0]
    return [s for score, _, s in scored[:MAX_SENTENCES] if score >= KEEP_RATIO * best]


def compose(chosen: list[Sentence]) -> str:
    if not chosen:
        return NO_ANSWER
    lines = [f"- {s.text} [source: {s.document_id}]" for s in chosen]
    return HEADER + "\n\n" + "\n".join(lines)


def input_tokens(request: InvokeModel) -> int:
    """Tokens of everything the provider was given: system, messages, and the passages.

    A passage already pasted into a message is counted once, where it appears.
    """
    contents = [m.content for m in request.messages]
    extra = [c.text for c in request.context if not any(c.text in m for m in contents)]
    return tokens.count_all([request.system, *contents, *extra])


def answer(request: InvokeModel) -> Completion:
    chosen = pick(question_of(request), sentences_of(request))
    text, produced, truncated = tokens.truncate(compose(chosen), request.max_tokens)
    return Completion(
        model=MODEL,
        provider=PROVIDER,
        text=text,
        usage=Usage(input_tokens=input_tokens(request), output_tokens=produced),
        stop_reason="max_tokens" if truncated else "end_turn",
    )


class OfflineProvider:
    """ModelProvider that never leaves the process."""

    name = PROVIDER

    async def complete(self, request: InvokeModel) -> Completion:
        return answer(request)

    async def close(self) -> None:
        return None
