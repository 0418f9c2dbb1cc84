"""The explicit registry of upstreams: each one is an `Upstream` declaration, found through the
`geofed.upstreams` entry-point group (geofed's five are declared in `pyproject.toml`; a plugin package adds
its own the same way, without touching geofed).

An upstream declares its name and title, how to authenticate, its HTTP policy tweaks, the pygeoapi provider
classes of its collections (each one's source carries the collection's one `Collection` declaration), its
processes, and the STAC federation members it contributes. Nothing here imports `providers/`: the entry points
do, when loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

LOGGER = logging.getLogger("geofed.registry")
GROUP = "geofed.upstreams"
BUILTIN_ORDER = ("carbonmapper", "spaceknow", "epoch", "appeears", "sentinelhub")


@dataclass(frozen=True)
class Upstream:
    name: str  # lower-case; settings are GEOFED_<NAME>_URL, GEOFED_<NAME>_<CREDENTIAL>
    title: str  # human name, used in every error message about it
    make_auth: Callable[[Any], Any] | None  # (Settings) -> geofed.http.auth.Auth; None for a local service
    real_url: str | None = None  # the documented production service root (shown, never used silently)
    policy: dict[str, Any] = field(default_factory=dict)  # HttpPolicy overrides (e.g. retry_after_unit="ms")
    features: tuple[type, ...] = ()  # pygeoapi feature provider classes (geofed.ogc.provider subclasses)
    processes: tuple[type, ...] = ()  # pygeoapi processor classes
    members: Callable[[], list[Any]] | None = None  # STAC federation members (stac_bridge.member.Member)
    aux_settings: tuple[str, ...] = ()  # settings of auxiliary endpoints on other hosts (token_url, auth_url)
    # a service of geofed's own over the other upstreams (e.g. the emissions inventory): no URL, no HTTP client,
    # enabled whenever geofed runs
    local: bool = False


@cache
def upstreams() -> dict[str, Upstream]:
    """Every registered upstream by name, geofed's own first (in their documented order)."""
    found: dict[str, Upstream] = {}
    for ep in entry_points(group=GROUP):
        try:
            upstream = ep.load()
        except Exception:
            LOGGER.exception("upstream %s could not be loaded; it is left out", ep.name)
            continue
        if not isinstance(upstream, Upstream) or upstream.name != ep.name:
            LOGGER.error("entry point %s does not name an Upstream called %r; left out", ep.value, ep.name)
            continue
        found[ep.name] = upstream
    rank = {name: i for i, name in enumerate(BUILTIN_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def names() -> tuple[str, ...]:
    return tuple(upstreams())


def get(name: str) -> Upstream:
    try:
        return upstreams()[name]
    except KeyError:
        raise LookupError(f"no upstream called {name!r} is registered (entry point group {GROUP})") from None


def dotted(cls: type) -> str:
    """The dotted path pygeoapi's plugin loader takes for a class."""
    return f"{cls.__module__}.{cls.__qualname__}"
