from pydantic import Field

from shared.settings import TenantrySettings


class ApiSettings(TenantrySettings):
    api_host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP door listens on; 0.0.0.0 behind a proxy or in a pod.",
    )
    api_port: int = Field(default=8080, ge=0, le=65535, description="Its port (0: any free).")
    request_timeout_s: float = Field(
        default=150.0, gt=0, le=900, description="Longest wait for the gateway's answer."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest HTTP request body; larger ones get 413 before parsing.",
    )
