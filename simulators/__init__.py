"""Offline simulators of the upstream APIs, served on loopback.

`build_root_app()` mounts every simulator under `/<upstream>`, so one loopback port serves them all and each
upstream's service root is `http://127.0.0.1:PORT/<upstream>` — the documented paths are appended to it exactly
as to the real service roots. geofed's five are listed in `specs()`; a plugin adds its own simulator through the
`geofed.simulators` entry-point group (a `SimulatorSpec`). Simulators import nothing from `geofed` or `providers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount


@dataclass(frozen=True)
class SimulatorSpec:
    name: str
    create_app: Callable[..., Starlette]  # (credentials=..., seed=..., **config) -> Starlette
    # Credentials the simulator accepts and geofed sends in demo mode. Not secrets: they only open the simulator.
    credentials: dict[str, str]
    # Auxiliary endpoints that live on other hosts in production (Auth0, Sentinel Hub's identity service) are
    # routes of the simulator: settings field → path under the simulator's service root.
    aux_paths: dict[str, str] = field(default_factory=dict)


NAMES: tuple[str, ...] = ("carbonmapper", "spaceknow", "epoch", "appeears", "sentinelhub")
DEMO_CREDENTIALS: dict[str, dict[str, str]] = {
    "carbonmapper": {"email": "demo@geofed.invalid", "password": "demo-password"},
    "spaceknow": {"username": "demo@geofed.invalid", "password": "demo-password"},
    "epoch": {"token": "demo-epoch-token"},
    "appeears": {"username": "demo", "password": "demo-password"},
    "sentinelhub": {"client_id": "geofed-demo", "client_secret": "demo-secret"},
}
AUX_PATHS: dict[str, dict[str, str]] = {
    "sentinelhub": {"token_url": "/auth/realms/main/protocol/openid-connect/token"},
    "spaceknow": {"auth_url": "/auth0/oauth/ro"},
}


@cache
def specs() -> dict[str, SimulatorSpec]:
    """geofed's own simulators, then those of plugins (entry-point group `geofed.simulators`)."""
    from simulators import appeears, carbonmapper, epoch, sentinelhub, spaceknow

    apps = {"carbonmapper": carbonmapper.create_app, "spaceknow": spaceknow.create_app, "epoch": epoch.create_app,
            "appeears": appeears.create_app, "sentinelhub": sentinelhub.create_app}
    found = [SimulatorSpec(n, apps[n], DEMO_CREDENTIALS[n], AUX_PATHS.get(n, {})) for n in NAMES]
    for ep in entry_points(group="geofed.simulators"):
        spec = ep.load()
        if isinstance(spec, SimulatorSpec):
            found.append(spec)
    return {spec.name: spec for spec in found}


def available() -> list[str]:
    return list(specs())


def geofed_env(base_urls: dict[str, str]) -> dict[str, str]:
    """The GEOFED_* environment that points a geofed server at running simulators, as production would be.

    Used by `geofed simulate`, the tests and the benchmarks: the clients see ordinary configured upstreams.
    """
    env: dict[str, str] = {}
    for name, url in base_urls.items():
        spec = specs()[name]
        prefix = f"GEOFED_{name.upper()}"
        env[f"{prefix}_URL"] = url
        for key, value in spec.credentials.items():
            env[f"{prefix}_{key.upper()}"] = value
        for key, path in spec.aux_paths.items():
            env[f"{prefix}_{key.upper()}"] = url + path
    return env


def create(name: str, **config: Any) -> Starlette:
    spec = specs()[name]
    config.setdefault("credentials", spec.credentials)
    return spec.create_app(**config)


def build_root_app(names: list[str] | None = None, **config: Any) -> Starlette:
    names = available() if names is None else names
    return Starlette(routes=[Mount(f"/{name}", app=create(name, **config)) for name in names])
