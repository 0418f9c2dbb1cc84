"""geofed settings: one pydantic-settings class, read from the environment only (12-factor)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

UPSTREAMS: tuple[str, ...] = ("carbonmapper", "spaceknow", "epoch", "appeears", "sentinelhub")

# The documented production service roots; shown in the README and `geofed config`. An upstream whose
# URL is unset is served by its simulator in demo mode, never silently by these.
REAL_URLS: dict[str, str] = {
    "carbonmapper": "https://api.carbonmapper.org",
    "spaceknow": "https://api.spaceknow.com",
    "epoch": "https://epoch-sco2-api.com",
    "appeears": "https://appeears.earthdatacloud.nasa.gov/api",
    "sentinelhub": "https://services.sentinel-hub.com",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOFED_", extra="ignore", case_sensitive=False)

    public_url: str = "http://127.0.0.1:5000"
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = Path(".geofed")
    log_level: str = "INFO"
    demo: bool = True

    # upstream service roots: the documented paths are appended to these
    carbonmapper_url: str | None = None
    spaceknow_url: str | None = None
    epoch_url: str | None = None
    appeears_url: str | None = None
    sentinelhub_url: str | None = None

    # credentials
    carbonmapper_token: SecretStr | None = None
    carbonmapper_email: str | None = None
    carbonmapper_password: SecretStr | None = None
    spaceknow_token: SecretStr | None = None
    spaceknow_username: str | None = None
    spaceknow_password: SecretStr | None = None
    spaceknow_auth_url: str = "https://spaceknow.auth0.com/oauth/ro"
    epoch_token: SecretStr | None = None
    appeears_username: str | None = None
    appeears_password: SecretStr | None = None
    sentinelhub_client_id: str | None = None
    sentinelhub_client_secret: SecretStr | None = None
    sentinelhub_token_url: str = (
        "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token"
    )

    # geofed's own API keys (comma-separated) guarding credit-spending processes and jobs
    api_keys: SecretStr | None = None
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None

    # HTTP layer
    http_timeout: float = Field(30.0, description="total seconds for one upstream call")
    http_connect_timeout: float = 5.0
    http_retries: int = Field(4, description="attempts for idempotent calls")
    http_backoff_max: float = Field(10.0, description="longest single wait between retries, seconds")
    http_retry_budget: float = Field(30.0, description="longest total time spent retrying one call, seconds")
    cache_ttl: float = Field(60.0, description="seconds a read response stays cached; 0 turns caching off")
    breaker_failures: int = Field(5, description="consecutive failures that open an upstream's circuit")
    breaker_reset: float = Field(30.0, description="seconds an open circuit waits before a trial call")
    token_refresh_margin: float = Field(60.0, description="refresh tokens this many seconds before expiry")
    threads: int = Field(64, description="worker threads for pygeoapi handlers (slow upstreams must not stall)")
    federation_timeout: float = Field(20.0, description="seconds each STAC federation member may take")
    federation_sort_cap: int = Field(
        10_000, description="most matches read from a STAC member that cannot sort as asked (more → 400)"
    )
    pagination_secret: SecretStr | None = Field(None, description="HMAC key for STAC paging tokens")
    malloc_arenas: int = Field(2, description="glibc malloc arenas for `geofed serve` (0 = glibc's default)")
    simulator_port: int = Field(0, description="port of the in-process simulators in demo mode; 0 = any free")

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    def upstream_url(self, name: str) -> str | None:
        return getattr(self, f"{name}_url")

    def upstream_mode(self, name: str) -> Literal["real", "simulated", "disabled"]:
        if self.upstream_url(name):
            return "real"
        return "simulated" if self.demo else "disabled"

    def api_key_list(self) -> list[str]:
        if not self.api_keys:
            return []
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    def masked(self) -> dict[str, object]:
        """Effective settings with every secret masked (for `geofed config` and logs)."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        for name in UPSTREAMS:
            out[f"{name}_mode"] = self.upstream_mode(name)
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
