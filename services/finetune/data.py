"""Training files: JSONL parsing with limits, and the one text leakage scans.

Errors name the line and the problem, never the line's content (it is tenant data and
may be exactly what a leakage rule is protecting).
"""

from __future__ import annotations

import json

from shared.tuned_model import Example, tokens

MIN_EXAMPLES = 10
MAX_EXAMPLES = 5_000
MAX_FIELD_CHARS = 8_000
# Between examples in the text sent to leakage: a redaction never spans it, so the
# redacted text splits back into the same examples.
SEPARATOR = "\n\u241e\n"
FIELD = "\n\u241f\n"  # between an example's prompt and completion


class InvalidData(ValueError):
    pass


def parse(jsonl: str, max_examples: int = MAX_EXAMPLES) -> list[Example]:
    examples = []
    for number, line in enumerate(jsonl.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InvalidData(f"line {number}: not valid JSON") from None
        if not isinstance(row, dict) or set(row) != {"prompt", "completion"}:
            raise InvalidData(
                f'line {number}: expected an object with exactly "prompt" and "completion"'
            )
        prompt, completion = row["prompt"], row["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise InvalidData(f"line {number}: prompt and completion must be strings")
        if not prompt.strip() or not completion.strip():
            raise InvalidData(f"line {number}: prompt and completion must not be empty")
        if len(prompt) > MAX_FIELD_CHARS or len(completion) > MAX_FIELD_CHARS:
            raise InvalidData(f"line {number}: a field is longer than {MAX_FIELD_CHARS} characters")
        if any(c in field for c in "\u241e\u241f" for field in (prompt, completion)):
            raise InvalidData(f"line {number}: contains a reserved character (U+241E/U+241F)")
        examples.append(Example(prompt=prompt, completion=completion))
        if len(examples) > max_examples:
            raise InvalidData(f"more than {max_examples} examples")
    if len(examples) < MIN_EXAMPLES:
        raise InvalidData(f"at least {MIN_EXAMPLES} examples are needed, got {len(examples)}")
    return examples


def scan_text(examples: list[Example]) -> str:
    return SEPARATOR.join(f"{e.prompt}{FIELD}{e.completion}" for e in examples)


def from_scanned(text: str, count: int) -> list[Example]:
    """The examples back from leakage's (possibly redacted) text."""
    parts = text.split(SEPARATOR)
    if len(parts) != count or any(p.count(FIELD) != 1 for p in parts):
        raise InvalidData("the redacted training data no longer splits into its examples")
    out = []
    for part in parts:
        prompt, completion = part.split(FIELD)
        out.append(Example(prompt=prompt, completion=completion))
    return out


def to_jsonl(examples: list[Example]) -> bytes:
    return "".join(
        json.dumps({"prompt": e.prompt, "completion": e.completion}) + "\n" for e in examples
    ).encode()


def training_tokens(examples: list[Example]) -> int:
    """Tokens of one pass over the examples: what one epoch is billed for."""
    return sum(len(tokens(e.prompt)) + len(tokens(e.completion)) for e in examples)
