"""Tenant registry logic: versioned saves, look-ups and previews. No broker here."""

from __future__ import annotations

from services.promptconfig.adapters import TenantStore, VersionConflict
from shared import templates
from shared.messages.tenants import TenantConfig, TenantProfile


class InvalidProfile(ValueError):
    pass


def check_profile(profile: TenantProfile) -> None:
    try:
        templates.check(profile.system_prompt_template)
    except templates.TemplateError as exc:
        raise InvalidProfile(str(exc)) from exc
    if profile.default_model not in profile.allowed_models:
        raise InvalidProfile("default_model must be one of allowed_models")


async def save(
    store: TenantStore, tenant_id: str, profile: TenantProfile, actor: str, attempts: int = 5
) -> tuple[TenantConfig, bool, TenantConfig | None]:
    """Save a new version. Returns (saved, created, previous). Retries on concurrent writes."""
    check_profile(profile)
    for _ in range(attempts):
        current = await store.get(tenant_id)
        previous, revision = current if current else (None, 0)
        if (
            previous is not None
            and TenantProfile.model_validate(
                previous.model_dump(include=set(TenantProfile.model_fields))
            )
            == profile
        ):
            return previous, False, previous  # unchanged: idempotent, no new version
        config = TenantConfig(
            tenant_id=tenant_id,
            version=(previous.version + 1) if previous else 1,
            updated_by=actor,
            **profile.model_dump(),
        )
        try:
            await store.put(config, revision)
        except VersionConflict:
            continue
        # After the compare-and-set won, so only the winning write becomes history. A crash
        # in between loses that one record; versions() still shows the current config.
        await store.record_version(config)
        return config, previous is None, previous
    raise VersionConflict(tenant_id)


def changed_fields(before: TenantConfig | None, after: TenantConfig) -> list[str]:
    if before is None:
        return sorted(TenantProfile.model_fields)
    return sorted(
        name for name in TenantProfile.model_fields if getattr(before, name) != getattr(after, name)
    )


async def versions(store: TenantStore, tenant_id: str) -> list[TenantConfig]:
    """Every version, oldest first, including the current one even if its record is missing."""
    recorded = {c.version: c for c in await store.versions(tenant_id)}
    current = await store.get(tenant_id)
    if current is not None:
        recorded.setdefault(current[0].version, current[0])
    return [recorded[v] for v in sorted(recorded)]


def profile_of(config: TenantConfig) -> TenantProfile:
    return TenantProfile.model_validate(config.model_dump(include=set(TenantProfile.model_fields)))


def preview(
    config: TenantConfig, template: str | None = None, instructions: str | None = None
) -> str:
    """Render with proposed changes, refusing a template that would be refused on save."""
    changed = config.model_copy(
        update={
            k: v
            for k, v in (
                ("system_prompt_template", template),
                ("custom_instructions", instructions),
            )
            if v is not None
        }
    )
    try:
        return templates.system_prompt(changed)
    except templates.TemplateError as exc:
        raise InvalidProfile(str(exc)) from exc
