from __future__ import annotations

import itertools
import re

import pytest

from services.retrieval.chunking import ChunkingConfig, chunk_text

pytestmark = pytest.mark.unit

SENTENCES = [
    f"Sentence number {i} talks about topic {i % 7} with a few extra words for length."
    for i in range(60)
]


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_empty_and_whitespace_have_no_chunks() -> None:
    assert chunk_text("") == []
    assert chunk_text("  \n\n \t ") == []


def test_short_text_is_one_chunk_with_whitespace_tidied() -> None:
    assert chunk_text("Hello   world.\nSecond line.") == ["Hello world. Second line."]


def test_long_text_respects_sizes_and_never_cuts_words() -> None:
    text = " ".join(SENTENCES)
    config = ChunkingConfig(max_chars=300, target_chars=200, overlap_chars=90)
    chunks = chunk_text(text, config)
    assert len(chunks) > 5
    original = set(words(text))
    for chunk in chunks:
        assert len(chunk) <= config.max_chars
        assert set(words(chunk)) <= original  # only whole words from the text
        assert chunk == chunk.strip()


def test_every_sentence_is_kept_in_order() -> None:
    chunks = chunk_text(" ".join(SENTENCES), ChunkingConfig(300, 200, 90))
    joined = " ".join(chunks)
    positions = [joined.find(s) for s in SENTENCES]
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions)


def test_consecutive_chunks_overlap_a_little() -> None:
    config = ChunkingConfig(max_chars=300, target_chars=200, overlap_chars=90)
    chunks = chunk_text(" ".join(SENTENCES), config)
    for before, after in itertools.pairwise(chunks):
        shared = next(
            (n for n in range(min(len(before), len(after)), 0, -1) if before.endswith(after[:n])),
            0,
        )
        assert 0 < shared <= config.overlap_chars


def test_no_overlap_when_disabled() -> None:
    chunks = chunk_text(" ".join(SENTENCES), ChunkingConfig(300, 200, 0))
    assert sum(len(c) for c in chunks) == len(" ".join(SENTENCES)) - (len(chunks) - 1)


def test_prefers_paragraph_breaks_once_past_target() -> None:
    para = " ".join(SENTENCES[:4])  # 291 chars: past the target; two of them fit in max
    text = "\n\n".join([para, para.upper(), para.lower()])
    chunks = chunk_text(text, ChunkingConfig(max_chars=800, target_chars=250, overlap_chars=0))
    assert chunks == [para, para.upper(), para.lower()]


def test_overlong_sentence_is_split_between_words() -> None:
    sentence = " ".join(["lengthy"] * 200)  # one 1,599-character "sentence"
    chunks = chunk_text(sentence, ChunkingConfig(max_chars=200, target_chars=100, overlap_chars=20))
    assert all(len(c) <= 200 for c in chunks)
    assert all(set(words(c)) == {"lengthy"} for c in chunks)


def test_a_giant_token_is_the_only_thing_ever_cut() -> None:
    blob = "x" * 450
    chunks = chunk_text(f"Start here. {blob} end.", ChunkingConfig(200, 100, 20))
    assert all(len(c) <= 200 for c in chunks)
    assert "".join(c for c in chunks if set(c) == {"x"}) == "x" * 400


@pytest.mark.parametrize(("max_chars", "target", "overlap"), [(100, 200, 10), (500, 300, 300)])
def test_bad_sizes_are_refused(max_chars: int, target: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(max_chars=max_chars, target_chars=target, overlap_chars=overlap)


def test_default_sizes_on_a_realistic_document() -> None:
    text = "\n\n".join(" ".join(SENTENCES[i : i + 5]) for i in range(0, 60, 5))
    chunks = chunk_text(text)
    assert all(len(c) <= 800 for c in chunks)
    assert all(len(c) >= 300 for c in chunks[:-1])
