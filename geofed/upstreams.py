"""Which upstreams are enabled, where each one lives (real or simulated) and its shared `UpstreamClient`.

Upstreams are declared in the registry (`geofed.registry`); this module builds one `UpstreamClient` per
upstream, lazily, and hands the same instance to both faces. In demo mode the demo launcher (`geofed.demo`)
tells it where the simulators listen and which demo credentials and auxiliary routes they accept.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

import httpx

from geofed import registry
from geofed.http.client import HttpPolicy, UpstreamClient
from geofed.http.loop import run_sync
from geofed.observability import health
from geofed.settings import Settings, get_settings


@dataclasses.dataclass
class Simulated:
    base_url: str
    credentials: dict[str, str]
    aux_paths: dict[str, str]  # settings field (token_url ...) → path under base_url


_simulated: dict[str, Simulated] = {}
_clients: dict[str, UpstreamClient] = {}
_transports: dict[str, httpx.AsyncBaseTransport] = {}
_lock = threading.Lock()


def set_simulated(name: str, simulated: Simulated) -> None:
    """Called by the demo launcher once the in-process simulators listen."""
    _simulated[name] = simulated


def set_transport(name: str, transport: httpx.AsyncBaseTransport | None) -> None:
    """The httpx transport of upstream `name`'s client (the test seam; None = the network). Takes effect for
    the next client built (see `reset`)."""
    if transport is None:
        _transports.pop(name, None)
    else:
        _transports[name] = transport


def mode(name: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if registry.get(name).local:
        return "local"
    if settings.upstream_url(name):
        return "real"
    if settings.demo and name in _simulated:
        return "simulated"
    return "disabled"


def enabled(settings: Settings | None = None) -> list[str]:
    return [name for name in registry.names() if mode(name, settings) != "disabled"]


def base_url(name: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    url = settings.upstream_url(name) or (_simulated[name].base_url if settings.demo and name in _simulated
                                          else None)
    if not url:
        raise LookupError(f"upstream {name} is disabled (no GEOFED_{name.upper()}_URL and demo mode off)")
    return url.rstrip("/")


def aux_url(name: str, field: str, settings: Settings | None = None) -> str | None:
    """An auxiliary endpoint (`token_url`, `auth_url`) of an upstream: the configured one, or in demo mode the
    simulator's route, so that a demo never sends credentials anywhere but loopback."""
    settings = settings or get_settings()
    if mode(name, settings) == "simulated":
        sim = _simulated[name]
        return f"{sim.base_url}{sim.aux_paths[field]}"
    return settings.upstream_setting(name, field)


def credentials(name: str, settings: Settings | None = None) -> dict[str, str]:
    """The upstream's credentials from settings; in demo mode (simulated), the simulators' demo ones."""
    settings = settings or get_settings()
    if mode(name, settings) == "simulated":
        return dict(_simulated[name].credentials)
    out: dict[str, str] = {}
    fields = {f[len(name) + 1:] for f in type(settings).model_fields if f.startswith(f"{name}_")}
    prefix = f"GEOFED_{name.upper()}_"
    fields |= {k[len(prefix):].lower() for k in os.environ if k.startswith(prefix)}
    for key in sorted(fields - {"url"}):
        value = settings.upstream_setting(name, key)
        if value is not None:
            out[key] = value
    return out


def policy(name: str, settings: Settings | None = None, **overrides: Any) -> HttpPolicy:
    settings = settings or get_settings()
    base = HttpPolicy(
        timeout=settings.http_timeout,
        connect_timeout=settings.http_connect_timeout,
        keepalive_expiry=settings.http_keepalive,
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

    return hishel.AsyncRedisStorage(Redis.from_url(settings.redis_url.get_secret_value()), default_ttl=ttl,
                                    key_prefix=f"{settings.redis_prefix}hishel")


def http(name: str) -> UpstreamClient:
    """The one `UpstreamClient` of upstream `name` (built on first use)."""
    client = _clients.get(name)
    if client is not None:
        return client
    with _lock:
        if name not in _clients:
            settings = get_settings()
            upstream = registry.get(name)
            if upstream.local or upstream.make_auth is None:
                raise LookupError(f"{name} is a local service of geofed: it has no upstream HTTP client")
            pol = policy(name, settings, **upstream.policy)
            _clients[name] = UpstreamClient(
                name,
                base_url(name, settings),
                title=upstream.title,
                auth=upstream.make_auth(settings),
                policy=pol,
                cache_storage=_cache_storage(settings, pol.cache_ttl),
                **({"transport": _transports[name]} if name in _transports else {}),
            )
            h = health(name)
            h.mode = mode(name, settings)
            h.base_url = base_url(name, settings) if h.mode == "real" else "simulator"
        return _clients[name]


def title(name: str) -> str:
    """The upstream's human name (for messages), or the name itself when it is not registered."""
    try:
        return registry.get(name).title
    except LookupError:
        return name


def init_health(settings: Settings | None = None) -> None:
    for name in registry.names():
        health(name).mode = mode(name, settings)


async def aclose_all() -> None:
    for client in list(_clients.values()):
        await client.aclose()
    _clients.clear()


def close_all() -> None:
    if _clients:
        run_sync(aclose_all())
