"""Split a document into overlapping chunks on paragraph and sentence boundaries.

Chunks are packed from whole sentences up to `max_chars`; once a chunk has reached
`target_chars` it also ends at the next paragraph break, so paragraphs stay together
when they can. Each chunk after the first repeats the last sentence (or, if that is
too long, the last few words) of the previous one, so a fact that straddles a
boundary can still be found whole. Words are never cut, except a single "word"
longer than `max_chars` (a URL, base64), which has no boundary to respect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_WHITESPACE = re.compile(r"\s+")
# A sentence ends at . ! ? (or their CJK forms), or at a closing quote or bracket after
# one, followed by whitespace. A fixed-width look-behind cannot see "?" before the quote,
# so any closing quote or bracket counts: over-splitting (here, or after "e.g.") is
# harmless, as sentences are only candidate break points and get packed back together.
_SENTENCE_END = re.compile("(?<=[.!?\u3002\uff01\uff1f\"'\u201d\u2019)\\]])\\s+")


@dataclass(frozen=True)
class ChunkingConfig:
    max_chars: int = 800
    target_chars: int = 500
    overlap_chars: int = 120

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_chars < self.target_chars <= self.max_chars:
            raise ValueError("chunk sizes must satisfy 0 <= overlap < target <= max")


@dataclass(frozen=True)
class _Unit:
    text: str
    ends_paragraph: bool


def chunk_text(text: str, config: ChunkingConfig | None = None) -> list[str]:
    """The chunks of `text`, in order. Empty (or whitespace-only) text has none."""
    config = config or ChunkingConfig()
    units = _units(text, config.max_chars)
    chunks: list[str] = []
    current: list[_Unit] = []
    for unit in units:
        if current and (
            _length([*current, unit]) > config.max_chars
            or (current[-1].ends_paragraph and _length(current) >= config.target_chars)
        ):
            chunks.append(_join(current))
            current = _overlap(current, config.overlap_chars)
            if _length([*current, unit]) > config.max_chars:
                current = []
        current.append(unit)
    if current:
        chunks.append(_join(current))
    return chunks


def _units(text: str, max_chars: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        flat = _WHITESPACE.sub(" ", paragraph).strip()
        if not flat:
            continue
        sentences = [s for s in _SENTENCE_END.split(flat) if s]
        pieces = [piece for s in sentences for piece in _split_long(s, max_chars)]
        units.extend(_Unit(p, ends_paragraph=False) for p in pieces[:-1])
        units.append(_Unit(pieces[-1], ends_paragraph=True))
    return units


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Pieces of at most max_chars, broken between words."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while len(word) > max_chars:  # no boundary to respect inside one giant token
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _overlap(units: list[_Unit], overlap_chars: int) -> list[_Unit]:
    """A proper suffix of `units` of at most overlap_chars, to start the next chunk with."""
    if overlap_chars == 0 or len(units) < 1:
        return []
    tail: list[_Unit] = []
    for unit in reversed(units[1:]):
        if _length([unit, *tail]) > overlap_chars:
            break
        tail.insert(0, unit)
    if tail:
        return tail
    # The last sentence alone is too long: carry its last few whole words instead.
    last = units[-1]
    words: list[str] = []
    for word in reversed(last.text.split(" ")[1:]):
        if len(word) + 1 + sum(len(w) + 1 for w in words) > overlap_chars:
            break
        words.insert(0, word)
    return [_Unit(" ".join(words), last.ends_paragraph)] if words else []


def _join(units: list[_Unit]) -> str:
    parts: list[str] = []
    for i, unit in enumerate(units):
        if i:
            parts.append("\n\n" if units[i - 1].ends_paragraph else " ")
        parts.append(unit.text)
    return "".join(parts)


def _length(units: list[_Unit]) -> int:
    return len(_join(units))
