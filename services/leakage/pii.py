"""PII: e-mail addresses, phone numbers, payment cards and IBANs.

A cheap regex finds candidates; a well-kept library then decides, so a random digit
run is not a card and a typo'd IBAN is not an IBAN:

* e-mail: `email-validator` (syntax only, no DNS: scanning must stay offline and fast);
* phone: `phonenumbers` (Google's libphonenumber metadata) - valid for its region;
* card: `python-stdnum`'s Luhn check plus the card networks' number prefixes;
* IBAN: `python-stdnum`'s IBAN check (country length and the ISO 7064 mod-97 digits).

Phone numbers are where business text bites (order numbers, amounts, dates), so a
national-format number also needs a phone cue nearby ("tel", "call", ...) or the
(415) style; an international "+CC ..." number only needs to be valid.
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban, luhn

from services.leakage.detectors import Detection
from shared.messages.leakage import ScanText

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
)
# Asset names like "logo@2x.png" look like addresses; a file extension is no TLD in use.
_FILE_TLDS = frozenset("png jpg jpeg gif svg webp pdf txt csv json yaml yml zip md".split())
# 4-4-4-x groups with one consistent separator, or Amex's 4-6-5.
_CARD = re.compile(
    r"(?<![\w.-])(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -]?)\d{6}\2\d{5})(?![\w-])"
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_PHONE = re.compile(r"(?<![\w+.-])(?:\+|00)?\(?\d[\d ().-]{5,18}\d(?![\w-])")
_PHONE_CUE = re.compile(
    r"(?:tel|phone|call|mobile|cell|fax|ring|text|whatsapp|hotline|contact|dial|number)\b"
    r"[^\n\d]{0,12}$",
    re.IGNORECASE,
)
PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "IE", "ES", "IT", "AU", "CA")


def _card_network(digits: str) -> bool:
    """Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay prefixes and lengths."""
    n = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if digits.startswith(("6011", "65", "644", "645", "646", "647", "648", "649", "62")):
        return 16 <= n <= 19
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    return False


def is_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and _card_network(digits) and luhn.is_valid(digits)


def is_email(candidate: str) -> bool:
    if candidate.rsplit(".", 1)[-1].lower() in _FILE_TLDS:
        return False
    try:
        validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def is_phone(candidate: str, before: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15 or candidate.count("(") != candidate.count(")"):
        return False
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}", candidate.strip()):
        return False  # a date
    international = candidate.startswith(("+", "00"))
    if international:
        number = "+" + candidate[2:] if candidate.startswith("00") else candidate
        return _valid(number, None)
    styled = re.match(r"\(\d{2,5}\) ?\d", candidate) is not None
    if not (styled or _PHONE_CUE.search(before)):
        return False
    return any(_valid(candidate, region) for region in PHONE_REGIONS)


def _valid(number: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


class PiiDetector:
    name = "pii"

    def detect(self, request: ScanText) -> list[Detection]:
        text = request.text
        spans: list[tuple[int, int, str]] = []

        def free(start: int, end: int) -> bool:
            return all(end <= s or start >= e for s, e, _ in spans)

        if "@" in text:
            for m in _EMAIL.finditer(text):
                if (m.start() == 0 or text[m.start() - 1] not in "@/:") and is_email(m.group()):
                    spans.append((m.start(), m.end(), "email"))
        for m in _IBAN.finditer(text):
            if free(*m.span()) and iban.is_valid(m.group()):
                spans.append((m.start(), m.end(), "iban"))
        for m in _CARD.finditer(text):
            if free(*m.span()) and is_card(m.group()):
                spans.append((m.start(), m.end(), "card"))
        for m in _PHONE.finditer(text):
            candidate = m.group().rstrip(").- ")
            start = m.start()
            if candidate.startswith("(") and not re.match(r"\(\d{2,5}\)", candidate):
                candidate, start = candidate[1:], start + 1
            end = start + len(candidate)
            before = text[max(0, start - 40) : start]
            if free(start, end) and is_phone(candidate, before):
                spans.append((start, end, "phone"))
        return [Detection(self.name, kind, request.location, s, e) for s, e, kind in sorted(spans)]
