"""Which upstreams exist, where each one lives (real or simulated) and its shared `UpstreamClient`.

Each `providers/<name>/client.py` defines `make_auth(settings, endpoints) -> Auth` and the upstream's
`HttpPolicy` tweaks (`POLICY_OVERRIDES`); this module builds one `UpstreamClient` per upstream, lazily,
and hands the same instance to both faces.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from typing import Any

from geofed.http.client import HttpPolicy, UpstreamClient
from geofed.http.loop import run_sync
from geofed.observability import health
from geofed.settings import UPSTREAMS, Settings, get_settings

_simulated: dict[str, str] = {}
_clients: dict[str, UpstreamClient] = {}
_lock = threading.Lock()


def set_simulated(base_urls: dict[str, str]) -> None:
    """Called by the app factory once the in-process simulators listen (demo mode)."""
    _simulated.update(base_urls)


def mode(name: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.upstream_url(name):
        return "real"
    if settings.demo and name in _simulated:
        return "simulated"
    return "disabled"


def enabled(settings: Settings | None = None) -> list[str]:
    return [name for name in UPSTREAMS if mode(name, settings) != "disabled"]


def base_url(name: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    url = settings.upstream_url(name) or (_simulated.get(name) if settings.demo else None)
    if not url:
        raise LookupError(f"upstream {name} is disabled (no GEOFED_{name.upper()}_URL and demo mode off)")
    return url.rstrip("/")


def aux_url(name: str, field: str, settings: Settings | None = None) -> str:
    """An auxiliary endpoint (`token_url`, `auth_url`) of an upstream: the configured one, or in demo mode the
    simulator's route, so that a demo never sends credentials anywhere but loopback."""
    settings = settings or get_settings()
    configured = getattr(settings, f"{name}_{field}")
    if mode(name, settings) == "simulated":
        from simulators import AUX_PATHS

        return f"{_simulated[name]}{AUX_PATHS[name][field]}"
    return configured


def credentials(name: str, settings: Settings | None = None) -> dict[str, str]:
    """The upstream's credentials from settings; in demo mode (simulated), the simulators' demo ones."""
    settings = settings or get_settings()
    if mode(name, settings) == "simulated":
        from simulators import DEMO_CREDENTIALS

        return dict(DEMO_CREDENTIALS[name])
    out: dict[str, str] = {}
    for field in type(settings).model_fields:
        if field.startswith(f"{name}_") and field not in (f"{name}_url",):
            value = getattr(settings, field)
            if value is None:
                continue
            out[field[len(name) + 1:]] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return out


def policy(name: str, settings: Settings | None = None, **overrides: Any) -> HttpPolicy:
    settings = settings or get_settings()
    base = HttpPolicy(
        timeout=settings.http_timeout,
        connect_timeout=settings.http_connect_timeout,
        attempts=settings.http_retries,
        backoff_max=settings.http_backoff_max,
        retry_budget=settings.http_retry_budget,
        cache_ttl=settings.cache_ttl,
        breaker_failures=settings.breaker_failures,
        breaker_reset=settings.breaker_reset,
    )
    return dataclasses.replace(base, **overrides)


def _cache_storage(settings: Settings, ttl: float) -> Any:
    if settings.redis_url is None or ttl <= 0:
        return None
    import hishel
    from redis.asyncio import Redis

    return hishel.AsyncRedisStorage(Redis.from_url(settings.redis_url.get_secret_value()), default_ttl=ttl)


def http(name: str) -> UpstreamClient:
    """The one `UpstreamClient` of upstream `name` (built on first use)."""
    client = _clients.get(name)
    if client is not None:
        return client
    with _lock:
        if name not in _clients:
            settings = get_settings()
            module = importlib.import_module(f"providers.{name}.client")
            pol = policy(name, settings, **getattr(module, "POLICY_OVERRIDES", {}))
            _clients[name] = UpstreamClient(
                name,
                base_url(name, settings),
                title=getattr(module, "TITLE", name),
                auth=module.make_auth(settings),
                policy=pol,
                cache_storage=_cache_storage(settings, pol.cache_ttl),
            )
            h = health(name)
            h.mode = mode(name, settings)
            h.base_url = base_url(name, settings) if h.mode == "real" else "simulator"
        return _clients[name]


def init_health(settings: Settings | None = None) -> None:
    for name in UPSTREAMS:
        health(name).mode = mode(name, settings)


async def aclose_all() -> None:
    for client in list(_clients.values()):
        await client.aclose()
    _clients.clear()


def close_all() -> None:
    if _clients:
        run_sync(aclose_all())
