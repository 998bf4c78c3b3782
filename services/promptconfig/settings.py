from shared.settings import TenantrySettings


class PromptConfigSettings(TenantrySettings):
    """promptconfig needs nothing beyond the shared settings yet."""
