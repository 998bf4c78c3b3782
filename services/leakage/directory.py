"""The live set of every tenant's identifiers, and the matcher built from it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from services.leakage.matcher import IdentifierKind, IdentifierMatcher, Owner
from shared.messages.tenants import TenantConfig

MIN_IDENTIFIER_LENGTH = 3
# Words too generic to point at any one tenant: an alias "Group" or a name "Global"
# would otherwise block every text that uses the word.
GENERIC_WORDS = frozenset(
    """and the inc ltd llc plc gmbh corp corporation company co group holdings global
    international services solutions systems technologies tech data digital labs team
    customer client tenant admin test demo default example none null""".split()
)


def usable(identifier: str) -> str | None:
    """The identifier with whitespace collapsed, or None if too short or too generic."""
    cleaned = " ".join(identifier.split())
    if len(cleaned) < MIN_IDENTIFIER_LENGTH or cleaned.lower() in GENERIC_WORDS:
        return None
    return cleaned


@dataclass(frozen=True)
class TenantIdentity:
    tenant_id: str
    name: str
    aliases: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    # The tenant's leakage policy overrides, (detector[.kind], action) pairs.
    policy: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_config(cls, config: TenantConfig) -> TenantIdentity:
        return cls(
            tenant_id=config.tenant_id,
            name=config.name,
            aliases=tuple(config.aliases),
            domains=tuple(config.domains),
            policy=tuple(sorted(config.leakage_policy.items())),
        )

    def identifiers(self) -> Iterator[tuple[str, IdentifierKind]]:
        candidates = [
            (self.tenant_id, IdentifierKind.TENANT_ID),
            (self.name, IdentifierKind.TENANT_NAME),
            *((alias, IdentifierKind.ALIAS) for alias in self.aliases),
            *((domain, IdentifierKind.DOMAIN) for domain in self.domains),
        ]
        for raw, kind in candidates:
            cleaned = usable(raw)
            if cleaned is not None:
                yield cleaned, kind


class TenantDirectory:
    """Mutated by the registry feed, read by the detectors; all on one event loop.

    The matcher is rebuilt lazily on the first scan after a change, so loading a
    thousand tenants at start-up costs one build, not a thousand.
    """

    def __init__(self, identities: Iterable[TenantIdentity] = ()) -> None:
        self._tenants = {identity.tenant_id: identity for identity in identities}
        self._matcher: IdentifierMatcher | None = None

    def __len__(self) -> int:
        return len(self._tenants)

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self._tenants

    def get(self, tenant_id: str) -> TenantIdentity | None:
        return self._tenants.get(tenant_id)

    def policy(self, tenant_id: str) -> dict[str, str]:
        identity = self._tenants.get(tenant_id)
        return dict(identity.policy) if identity is not None else {}

    def upsert(self, identity: TenantIdentity) -> None:
        if self._tenants.get(identity.tenant_id) != identity:
            self._tenants[identity.tenant_id] = identity
            self._matcher = None

    def remove(self, tenant_id: str) -> bool:
        if self._tenants.pop(tenant_id, None) is None:
            return False
        self._matcher = None
        return True

    def replace_all(self, identities: Iterable[TenantIdentity]) -> None:
        self._tenants = {identity.tenant_id: identity for identity in identities}
        self._matcher = None

    def matcher(self) -> IdentifierMatcher:
        if self._matcher is None:
            self._matcher = IdentifierMatcher(
                (identifier, Owner(identity.tenant_id, kind))
                for identity in self._tenants.values()
                for identifier, kind in identity.identifiers()
            )
        return self._matcher
