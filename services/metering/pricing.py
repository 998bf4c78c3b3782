"""The price table: exact nano-USD prices per token, versioned, replaceable from a JSON file.

Prices are quoted per million tokens (how vendors publish them) and converted once,
with shared.money.per_mtok, to whole nano-USD per token; from then on every cost is
integer multiplication, so no float ever touches money. A model that is not in the
table is an error, never a zero price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.messages.completions import Usage
from shared.money import per_mtok

# Dollar amounts in a price file are strings ("0.30"): a JSON number would be a float.
_USD = r"^\d{1,6}(\.\d{1,9})?$"


class UnknownModel(LookupError):
    def __init__(self, model: str, version: str) -> None:
        super().__init__(f"model {model!r} has no price in price table {version}")
        self.model = model


@dataclass(frozen=True)
class ModelPrice:
    """nano-USD per token."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    def __post_init__(self) -> None:
        # A zero price would record tokens used at zero cost, which is how usage goes
        # missing from bills; even our own CPUs get a nominal price.
        if min(self.input, self.output, self.cache_read, self.cache_write) <= 0:
            raise ValueError("every token price must be at least 1 nano-USD per token")

    def cost(self, usage: Usage) -> int:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_input_tokens * self.cache_read
            + usage.cache_creation_input_tokens * self.cache_write
        )

    def worst_case(self, input_tokens: int, max_output_tokens: int) -> int:
        # A prompt may be billed as a cache write, which costs more than plain input
        # (1.25x for Anthropic), so the hold uses the dearer of the two rates.
        return input_tokens * max(self.input, self.cache_write) + max_output_tokens * self.output


@dataclass(frozen=True)
class PriceTable:
    version: str
    models: Mapping[str, ModelPrice]

    def price(self, model: str) -> ModelPrice:
        found = self.find(model)
        if found is None:
            raise UnknownModel(model, self.version)
        return found

    def find(self, model: str) -> ModelPrice | None:
        # A tenant's fine-tuned model ("ft:<base>:<suffix>") is priced as its base model
        # unless the table names it; its training is priced as "training:<base>".
        if model not in self.models and model.startswith("ft:") and model.count(":") >= 2:
            return self.models.get(model.split(":")[1])
        return self.models.get(model)


def per_mtok_price(input: str, output: str, cache_read: str, cache_write: str) -> ModelPrice:
    return ModelPrice(
        input=per_mtok(input),
        output=per_mtok(output),
        cache_read=per_mtok(cache_read),
        cache_write=per_mtok(cache_write),
    )


DEFAULT_TABLE = PriceTable(
    version="2026-12-04",  # added fine-tuning training prices
    models={
        "claude-sonnet-4-5": per_mtok_price("3", "15", "0.30", "3.75"),
        "claude-haiku-4-5": per_mtok_price("1", "5", "0.10", "1.25"),
        "claude-opus-4-1": per_mtok_price("15", "75", "1.50", "18.75"),
        "claude-3-5-sonnet-20241022": per_mtok_price("3", "15", "0.30", "3.75"),
        # The offline extractive provider runs on our own CPUs: a nominal price set by
        # ops so its tokens are never recorded as free (it has no cache, but a cache
        # token reported for it still costs something).
        "offline-extractive": per_mtok_price("0.10", "0.10", "0.10", "0.10"),
        # Fine-tuning, per training token (tokens of the examples x epochs): the offline
        # trainer runs on our CPUs (nominal, like offline-extractive); the OpenAI-compatible
        # backend passes on the vendor's training price. Only `input` is ever charged;
        # input == cache_write so the hold is exactly the cost (plus one output token).
        "training:offline-extractive": per_mtok_price("0.50", "0.50", "0.50", "0.50"),
        "training:gpt-4o-mini-2024-07-18": per_mtok_price("3", "3", "3", "3"),
        # Calls to a model fine-tuned from it ("ft:gpt-4o-mini-2024-07-18:..."): the
        # vendor's fine-tuned inference price.
        "gpt-4o-mini-2024-07-18": per_mtok_price("0.30", "1.20", "0.15", "0.30"),
    },
)


class _FilePrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: str = Field(pattern=_USD, description="USD per million input tokens.")
    output_per_mtok: str = Field(pattern=_USD, description="USD per million output tokens.")
    cache_read_per_mtok: str = Field(pattern=_USD, description="USD per million cache reads.")
    cache_write_per_mtok: str = Field(pattern=_USD, description="USD per million cache writes.")


class PriceFile(BaseModel):
    """The JSON file ops may supply. It replaces the built-in table whole, so one
    price_version always names one complete set of prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price_version: str = Field(min_length=1, max_length=64, description="Version label.")
    models: dict[str, _FilePrice] = Field(min_length=1, description="Prices by model name.")


def load_price_table(path: Path) -> PriceTable:
    """Parse and convert a price file; raises ValueError on anything not exact."""
    try:
        spec = PriceFile.model_validate_json(path.read_bytes())
        return _convert(spec)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise ValueError(f"price table {path} is invalid: {exc}") from exc


def _convert(spec: PriceFile) -> PriceTable:
    return PriceTable(
        version=spec.price_version,
        models={
            name: per_mtok_price(
                p.input_per_mtok, p.output_per_mtok, p.cache_read_per_mtok, p.cache_write_per_mtok
            )
            for name, p in spec.models.items()
        },
    )
