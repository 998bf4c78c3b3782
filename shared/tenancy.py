"""The one tenant-id rule, applied at every boundary.

A tenant id becomes a NATS subject token, part of a Qdrant collection name and a
ClickHouse filter value, so it is restricted to characters none of those can misread:
lower-case ASCII letters, digits and single inner hyphens, 1 to 48 characters.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

MAX_TENANT_ID_LENGTH = 48
_TENANT_ID = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,47}")

# Reserved for events that cannot be attributed to a valid tenant (e.g. a request
# that arrived with a malformed id). The underscore can never pass validation, so no
# real tenant can own, read or be billed for these rows.
UNATTRIBUTED = "_unattributed"


class InvalidTenantId(ValueError):
    """Raised for any tenant id that breaks the rule; the message never echoes it raw."""

    def __init__(self, raw: object) -> None:
        self.raw_preview = describe_raw(raw)
        super().__init__(
            "invalid tenant id "
            f"{self.raw_preview}: use 1-{MAX_TENANT_ID_LENGTH} lower-case letters, digits "
            "and single hyphens, starting and ending with a letter or digit"
        )


def describe_raw(raw: object, limit: int = 40) -> str:
    """A short, printable, escaped preview of untrusted input for errors and audit."""
    text = raw if isinstance(raw, str) else type(raw).__name__
    preview = text[:limit].encode("unicode_escape").decode("ascii")
    return repr(preview + ("…" if len(text) > limit else ""))


def is_valid_tenant_id(raw: object) -> bool:
    return (
        isinstance(raw, str)
        and len(raw) <= MAX_TENANT_ID_LENGTH
        and _TENANT_ID.fullmatch(raw) is not None
    )


def validate_tenant_id(raw: object) -> str:
    """Return the id unchanged if it is valid; raise InvalidTenantId otherwise."""
    if not is_valid_tenant_id(raw):
        raise InvalidTenantId(raw)
    assert isinstance(raw, str)
    return raw


def _strict_str(value: object) -> object:
    # Refuse coercion (e.g. ints) before the pattern check.
    if not isinstance(value, str):
        raise InvalidTenantId(value)
    return value


TenantId = Annotated[str, BeforeValidator(_strict_str), AfterValidator(validate_tenant_id)]
"""A pydantic field type that only accepts valid tenant ids."""


def validate_attribution(raw: object) -> str:
    """Like validate_tenant_id, but also accepts UNATTRIBUTED (for audit and error replies)."""
    if raw == UNATTRIBUTED:
        return UNATTRIBUTED
    return validate_tenant_id(raw)


AttributedTenantId = Annotated[
    str, BeforeValidator(_strict_str), AfterValidator(validate_attribution)
]
"""A tenant id, or UNATTRIBUTED for events about input whose tenant id was invalid."""
