"""geofed settings: one pydantic-settings class, read from the environment only (12-factor)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOFED_", extra="ignore", case_sensitive=False)

    public_url: str = "http://127.0.0.1:5000"
    host: str = "127.0.0.1"
    port: int = 5000
    keepalive: int = Field(
        75, description="seconds an idle client connection stays open: longer than a proxy's (nginx reuses its "
        "upstream connections for 60 s) or a client's (httpx: 5 s), so it is never closed as a request is sent")
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
    sentinelhub_collection_urls: str | None = Field(
        None, description="Sentinel Hub base URL per collection (Catalog and Statistical API), as JSON "
        "{\"landsat-ot-l2\": \"https://...\"} or landsat-ot-l2=https://...,sentinel-3-olci=https://...; overrides "
        "the documented default table (providers/sentinelhub/client.py), which applies only when "
        "GEOFED_SENTINELHUB_URL is the main deployment")

    # geofed's own API keys (comma-separated) guarding credit-spending processes and jobs
    api_keys: SecretStr | None = None
    api_key_processes: str | None = Field(
        None, description="comma-separated process ids that need an API key besides those whose class sets "
        "requires_api_key")
    api_keys_file: Path | None = Field(
        None, description="file with more API keys, one per line (# comments); re-read when it changes")
    rate_limit: str | None = Field(
        None, description="requests per API key (anonymous callers: per client address), e.g. '60/minute'; "
        "unset = no limit")
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    redis_prefix: str = Field(
        "geofed:", description="prefix of the Redis keys geofed writes (tokens, locks, memos), so that deployments "
        "can share one Redis")
    token_key: SecretStr | None = Field(
        None, description="Fernet key(s), comma-separated, newest first, encrypting the upstream tokens replicas "
        "share through Redis; any long random string works. Unset: each replica fetches its own tokens")
    shared_wait: float = Field(
        10.0, description="longest wait, seconds, for an upstream read or token another replica is fetching; "
        "then this replica calls the upstream itself")

    # alerts (geofed.alerts): the watcher's poll interval, the MQTT broker, webhook hosts, delivery retries
    watch_interval: float = Field(60.0, description="seconds between two polls of the watched collections")
    watch_scenes: str = Field("sentinelhub:sentinel-2-l2a", description="comma-separated STAC member collections "
                              "whose new scenes over the subscriptions' areas are alerted (one search per poll each)")
    pubsub_url: SecretStr | None = Field(None, description="MQTT broker (mqtt://host:1883); unset = no MQTT")
    webhook_allow: str | None = Field(None, description="comma-separated webhook hosts (name, *.suffix, IP or "
                                      "CIDR); private and loopback addresses only when listed")
    alert_max_attempts: int = Field(8, description="delivery attempts before an event is dead-lettered")
    alert_retry_base: float = Field(5.0, description="seconds before the first redelivery; doubles each time")

    # HTTP layer
    http_timeout: float = Field(30.0, description="total seconds for one upstream call")
    http_connect_timeout: float = 5.0
    http_keepalive: float = Field(
        1.5, description="seconds an idle connection to an upstream or a webhook is reused (keep below the servers' "
        "idle timeout)")
    http_retries: int = Field(4, description="attempts for idempotent calls")
    http_backoff_max: float = Field(10.0, description="longest single wait between retries, seconds")
    http_retry_budget: float = Field(30.0, description="longest total time spent retrying one call, seconds")
    cache_ttl: float = Field(60.0, description="seconds a read response stays cached; 0 turns caching off")
    breaker_failures: int = Field(5, description="consecutive failures that open an upstream's circuit")
    breaker_reset: float = Field(30.0, description="seconds an open circuit waits before a trial call")
    token_refresh_margin: float = Field(60.0, description="refresh tokens this many seconds before expiry")
    max_active_requests: int = Field(
        24, description="requests worked on at once; more wait their turn (0 = no limit)")
    admission_wait: float = Field(60.0, description="seconds a request may wait for its turn (then 503)")
    threads: int = Field(
        32, description="worker threads for pygeoapi handlers (at least GEOFED_MAX_ACTIVE_REQUESTS: slow upstreams "
        "must not stall)")
    federation_timeout: float = Field(20.0, description="seconds each STAC federation member may take")
    federation_sort_cap: int = Field(
        10_000, description="most matches read from a STAC member that cannot sort as asked (more → 400)"
    )
    pagination_secret: SecretStr | None = Field(
        None, description="HMAC key(s) for STAC paging tokens, comma-separated: signs with the first, accepts all")
    max_body_bytes: int = Field(4_194_304, description="largest request body accepted (larger → 413)")
    filter_max_length: int = Field(10_000, description="longest CQL2 filter (characters of text or JSON)")
    filter_max_depth: int = Field(
        100, description="deepest CQL2 expression tree (a chain of n AND/OR counts n levels; use IN for lists)")
    max_vertices: int = Field(10_000, description="most vertices of a geometry input (intersects, process "
                              "inputs, filter literals)")
    stac_max_limit: int = Field(1000, description="largest STAC page; a larger `limit` is reduced to it")
    inventory_sync_max_km2: float = Field(
        20_000.0, description="emissions-inventory: largest area (km²) answered synchronously; larger needs "
        "'Prefer: respond-async' (a job)")
    inventory_sync_max_features: int = Field(
        5_000, description="emissions-inventory: most plumes + sources + plots answered synchronously")
    inventory_max_km2: float = Field(
        1_000_000.0, description="emissions-inventory: largest area (km²) accepted at all (larger → 400)")
    malloc_arenas: int = Field(2, description="glibc malloc arenas for `geofed serve` (0 = glibc's default)")
    simulator_port: int = Field(
        0, description="port of the demo simulators (a child process of the server); 0 = any free")

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    # optional contact and project links shown on the landing page (left out when unset)
    contact_name: str = "geofed operators"
    contact_email: str | None = None
    contact_url: str | None = None

    def upstream_url(self, name: str) -> str | None:
        """`GEOFED_<NAME>_URL`: a declared field for geofed's own upstreams, the environment for plugins."""
        value = getattr(self, f"{name}_url", None)
        return value if value is not None or f"{name}_url" in type(self).model_fields else (
            os.environ.get(f"GEOFED_{name.upper()}_URL") or None)

    def upstream_setting(self, name: str, key: str) -> str | None:
        """`GEOFED_<NAME>_<KEY>` (e.g. a plugin upstream's credential), secrets unwrapped."""
        field = f"{name}_{key}"
        if field in type(self).model_fields:
            value = getattr(self, field)
            return value.get_secret_value() if isinstance(value, SecretStr) else value
        return os.environ.get(f"GEOFED_{name.upper()}_{key.upper()}") or None

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
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
