"""Finding tenant identifiers in text with one Aho-Corasick automaton (pyahocorasick).

One pass over the text finds every identifier of every tenant at once, whatever the
number of tenants; matches are then kept only on whole-word boundaries. Matching is
case-insensitive through `fold` (shared.fingerprint), which lower-cases character by
character so offsets in the folded text are offsets in the original.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import ahocorasick

from shared.fingerprint import fold


class IdentifierKind(StrEnum):
    TENANT_ID = "tenant_id"
    TENANT_NAME = "tenant_name"
    ALIAS = "alias"
    DOMAIN = "domain"


_KIND_ORDER = {kind: i for i, kind in enumerate(IdentifierKind)}


@dataclass(frozen=True)
class Owner:
    tenant_id: str
    kind: IdentifierKind


@dataclass(frozen=True)
class IdentifierMatch:
    start: int
    end: int
    owners: tuple[Owner, ...]


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _bounded(text: str, start: int, end: int) -> bool:
    """No word character continues the match on either side ("Acme" is not in "Acmeology").

    Only checked where the identifier itself starts/ends with a word character, so a
    domain like "acme.com" still matches inside "mail.acme.com".
    """
    if _is_word(text[start]) and start > 0 and _is_word(text[start - 1]):
        return False
    return not (_is_word(text[end - 1]) and end < len(text) and _is_word(text[end]))


class IdentifierMatcher:
    """Immutable: the directory builds a new one whenever the tenant set changes."""

    def __init__(self, entries: Iterable[tuple[str, Owner]]) -> None:
        owners: dict[str, list[Owner]] = {}
        for identifier, owner in entries:
            found = owners.setdefault(fold(identifier), [])
            if owner not in found:
                found.append(owner)
        self._automaton = ahocorasick.Automaton()
        for key, key_owners in owners.items():
            ordered = tuple(sorted(key_owners, key=lambda o: (_KIND_ORDER[o.kind], o.tenant_id)))
            self._automaton.add_word(key, (len(key), ordered))
        self._size = len(owners)
        if self._size:
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return self._size

    def find(self, text: str) -> list[IdentifierMatch]:
        """Whole-word matches, longest first where they overlap; a match inside a longer
        one is dropped (in "Acme Bank" the name "Acme" of another tenant is not a hit)."""
        if not self._size or not text:
            return []
        folded = fold(text)
        found = []
        for last, (length, owners) in self._automaton.iter(folded):
            start, end = last - length + 1, last + 1
            if _bounded(folded, start, end):
                found.append(IdentifierMatch(start, end, owners))
        found.sort(key=lambda m: (m.start, m.start - m.end))
        kept: list[IdentifierMatch] = []
        reach = -1
        for match in found:
            if match.end <= reach:
                continue
            kept.append(match)
            reach = match.end
        return kept
