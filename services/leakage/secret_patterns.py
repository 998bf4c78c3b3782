"""The secrets detector: credentials that must never pass through a prompt or an answer.

Typed patterns come first and win over the generic `password = ...` assignment pattern
when they overlap, so `api_key = "sk-ant-..."` is reported once, as an anthropic_key.
Unlabelled random-looking tokens (`entropy`) come last, only where nothing else matched.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from services.leakage.detectors import Detection
from services.leakage.entropy import high_entropy_tokens
from shared.fingerprint import fold
from shared.messages.leakage import ScanText

# Patterns start with a literal so `re` can skip ahead fast (a leading look-behind made
# each one 20x slower); the "not glued to a longer token" check on the left is done in
# Python on the few matches instead. Right-hand look-aheads are cheap and stay.
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "_-")
_UPPER_DIGITS = frozenset(string.ascii_uppercase + string.digits)
_R = r"(?![A-Za-z0-9_-])"


@dataclass(frozen=True)
class SecretPattern:
    kind: str
    regex: re.Pattern[str]
    not_after: frozenset[str] = _TOKEN_CHARS  # characters that may not precede a match


PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:[\s\S]{0,20000}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?"
        ),
        frozenset(),
    ),
    SecretPattern("anthropic_key", re.compile(r"sk-ant-[A-Za-z0-9_-]{16,}")),
    SecretPattern(
        "openai_key",
        re.compile(r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})" + _R),
    ),
    SecretPattern(
        "aws_access_key",
        re.compile(r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        _UPPER_DIGITS,
    ),
    SecretPattern(
        "github_token",
        re.compile(r"gh(?:[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})" + _R),
    ),
    SecretPattern("slack_token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    SecretPattern("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")),
)

# `password = "..."`, `api_key: ...`, `DB_PASSWORD=...`, `"client_secret": "..."`.
# Run on the case-folded text (same offsets), which is ~10x faster than (?i). Only the
# value is reported, so the redacted text still reads `password = "[SECRET:...]"`.
_ASSIGNMENT = re.compile(
    r"(?P<key>p(?:assw(?:or)?d|wd|assphrase|rivate[_-]?key)|secret"
    r"|api[_-]?key|a(?:ccess|uth)[_-]?token)"
    r"(?:[_-]?(?:key|value|token))?[\"']?[ \t]*(?::=|=>|=|:)[ \t]*"
    r"(?:\"(?P<dq>[^\"\r\n]{4,300})\"|'(?P<sq>[^'\r\n]{4,300})'|(?P<bare>[^\s\"'`,;]{4,300}))"
)
_KIND_OF_KEY = (
    ("pass", "password"),
    ("pwd", "password"),
    ("api", "api_key"),
    ("token", "token"),
)
_PLACEHOLDER_VALUES = frozenset(
    """none null nil true false required optional redacted hidden masked string changeme
    change-me your-password your-api-key example placeholder""".split()
)


# Templates, already-redacted spans and code that fetches the secret from elsewhere.
_NOT_VALUES = (
    "$",
    "{{",
    "<",
    "%(",
    "[",
    "(",
    "os.",
    "env.",
    "env(",
    "env[",
    "getenv",
    "process.env",
)


def _kind_of(key: str) -> str:
    lowered = key.lower()
    return next((kind for prefix, kind in _KIND_OF_KEY if prefix in lowered), "secret")


def _is_real_value(value: str, quoted: bool) -> bool:
    """Filter out placeholders, templates and code references (`os.environ[...]`)."""
    stripped = value.strip()
    if stripped.lower() in _PLACEHOLDER_VALUES or len(set(stripped)) <= 2:
        return False
    if stripped.startswith(_NOT_VALUES):
        return False
    if quoted:
        return len(stripped) >= 4
    # Unquoted prose ("password: your usual login") rarely has the mix a secret has.
    has_digit = any(c.isdigit() for c in stripped)
    has_symbol = any(not c.isalnum() for c in stripped)
    mixed_case = stripped.lower() != stripped and stripped.upper() != stripped
    return len(stripped) >= 6 and "(" not in stripped and (has_digit or has_symbol or mixed_case)


class SecretDetector:
    name = "secret"

    def detect(self, request: ScanText) -> list[Detection]:
        text = request.text
        spans: list[tuple[int, int, str]] = []

        def free(start: int, end: int) -> bool:
            return all(end <= s or start >= e for s, e, _ in spans)

        for pattern in PATTERNS:
            for match in pattern.regex.finditer(text):
                start, end = match.span()
                if (start == 0 or text[start - 1] not in pattern.not_after) and free(start, end):
                    spans.append((start, end, pattern.kind))
        for match in _ASSIGNMENT.finditer(fold(text)):
            group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
            value = text[match.start(group) : match.end(group)]  # original case
            if group == "bare":
                value = value.rstrip(".)]}!?")
            start = match.start(group)
            end = start + len(value)
            if _is_real_value(value, quoted=group != "bare") and free(start, end):
                spans.append((start, end, _kind_of(match.group("key"))))
        for start, end in high_entropy_tokens(text):
            if free(start, end):
                spans.append((start, end, "high_entropy_token"))
        return [
            Detection(self.name, kind, request.location, start, end)
            for start, end, kind in sorted(spans)
        ]
