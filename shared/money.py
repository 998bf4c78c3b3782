"""Money as exact integers of nano-USD (1e-9 USD); Decimal only for display and parsing."""

from __future__ import annotations

from decimal import Decimal

NANO_PER_USD = 1_000_000_000


def usd(amount: str | int | Decimal) -> int:
    """Parse a dollar amount exactly ('0.80' -> 800_000_000). Refuses fractions of a nano-USD."""
    value = Decimal(amount) * NANO_PER_USD
    if value != value.to_integral_value():
        raise ValueError(f"{amount} USD is not a whole number of nano-USD")
    return int(value)


def per_mtok(amount: str) -> int:
    """A price quoted per million tokens, as nano-USD per token ($3/MTok -> 3000)."""
    value = Decimal(amount) * NANO_PER_USD / 1_000_000
    if value != value.to_integral_value():
        raise ValueError(f"${amount}/MTok is not a whole number of nano-USD per token")
    return int(value)


def format_usd(nanousd: int) -> str:
    return f"${Decimal(nanousd) / NANO_PER_USD:.6f}"
