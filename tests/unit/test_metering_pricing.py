"""The price table: exact integer costs, cache tokens, unknown models, override files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.metering.pricing import DEFAULT_TABLE, UnknownModel, load_price_table
from shared.messages.completions import Usage
from shared.money import NANO_PER_USD

pytestmark = pytest.mark.unit

# USD per million tokens: input, output, cache read, cache write (the published prices).
PUBLISHED = {
    "claude-sonnet-4-5": ("3", "15", "0.30", "3.75"),
    "claude-haiku-4-5": ("1", "5", "0.10", "1.25"),
    "claude-opus-4-1": ("15", "75", "1.50", "18.75"),
    "claude-3-5-sonnet-20241022": ("3", "15", "0.30", "3.75"),
    "offline-extractive": ("0.10", "0.10", "0.10", "0.10"),
}


def expected_nanousd(prices: tuple[str, str, str, str], usage: Usage) -> int:
    counts = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    )
    usd = sum((Decimal(p) * n / 1_000_000 for p, n in zip(prices, counts, strict=True)), Decimal(0))
    value = usd * NANO_PER_USD
    assert value == value.to_integral_value()
    return int(value)


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_every_model_is_priced_exactly(model: str) -> None:
    usage = Usage(
        input_tokens=123_457,
        output_tokens=9_871,
        cache_read_input_tokens=50_003,
        cache_creation_input_tokens=7_001,
    )
    cost = DEFAULT_TABLE.price(model).cost(usage)
    assert isinstance(cost, int)
    assert cost == expected_nanousd(PUBLISHED[model], usage)


def test_sonnet_cost_with_cache_tokens() -> None:
    usage = Usage(
        input_tokens=1_000,
        output_tokens=500,
        cache_read_input_tokens=2_000,
        cache_creation_input_tokens=400,
    )
    # $0.003 + $0.0075 + $0.0006 + $0.0015
    assert DEFAULT_TABLE.price("claude-sonnet-4-5").cost(usage) == 12_600_000


def test_per_token_prices_are_whole_nanousd() -> None:
    haiku = DEFAULT_TABLE.price("claude-haiku-4-5")
    assert (haiku.input, haiku.output, haiku.cache_read, haiku.cache_write) == (
        1_000,
        5_000,
        100,
        1_250,
    )


def test_offline_tokens_are_never_free() -> None:
    cost = DEFAULT_TABLE.price("offline-extractive").cost(Usage(input_tokens=1, output_tokens=1))
    assert cost == 200


def test_worst_case_holds_the_dearer_input_rate() -> None:
    sonnet = DEFAULT_TABLE.price("claude-sonnet-4-5")
    # A prompt billed as cache writes ($3.75) costs more than plain input ($3).
    assert sonnet.worst_case(1_000, 100) == 1_000 * 3_750 + 100 * 15_000
    worst = sonnet.worst_case(1_000, 100)
    for usage in (
        Usage(input_tokens=1_000, output_tokens=100),
        Usage(cache_creation_input_tokens=1_000, output_tokens=100),
        Usage(cache_read_input_tokens=1_000, output_tokens=100),
    ):
        assert sonnet.cost(usage) <= worst


def test_unknown_model_is_an_error_not_a_zero_price() -> None:
    with pytest.raises(UnknownModel, match="gpt-imaginary"):
        DEFAULT_TABLE.price("gpt-imaginary")
    assert DEFAULT_TABLE.find("gpt-imaginary") is None


def test_price_file_replaces_the_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        '{"price_version": "ops-2026-01", "models": {"claude-haiku-4-5": {'
        '"input_per_mtok": "0.80", "output_per_mtok": "4", '
        '"cache_read_per_mtok": "0.08", "cache_write_per_mtok": "1"}}}'
    )
    table = load_price_table(path)
    assert table.version == "ops-2026-01"
    assert table.price("claude-haiku-4-5").input == 800
    with pytest.raises(UnknownModel):
        table.price("claude-sonnet-4-5")


@pytest.mark.parametrize(
    "price",
    [
        "0.30",  # fine, as control
        "3.0000001",  # a fraction of a nano-USD per token
        0.3,  # a JSON number: a float
    ],
)
def test_price_file_refuses_inexact_prices(tmp_path: Path, price: object) -> None:
    path = tmp_path / "prices.json"
    value = f'"{price}"' if isinstance(price, str) else str(price)
    path.write_text(
        '{"price_version": "v", "models": {"m": {'
        f'"input_per_mtok": {value}, "output_per_mtok": "1", '
        '"cache_read_per_mtok": "0.1", "cache_write_per_mtok": "1"}}}'
    )
    if price == "0.30":
        assert load_price_table(path).price("m").input == 300
        return
    with pytest.raises(ValueError):
        load_price_table(path)


def test_price_file_refuses_a_zero_price(tmp_path: Path) -> None:
    """A zero price would record tokens used at zero cost."""
    path = tmp_path / "prices.json"
    path.write_text(
        '{"price_version": "v", "models": {"m": {'
        '"input_per_mtok": "1", "output_per_mtok": "1", '
        '"cache_read_per_mtok": "0", "cache_write_per_mtok": "1"}}}'
    )
    with pytest.raises(ValueError, match="at least 1 nano-USD"):
        load_price_table(path)
