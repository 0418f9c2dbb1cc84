"""Offline simulators of the five upstream APIs (one module each), served on loopback.

`build_root_app()` mounts every simulator under `/<upstream>`, so one loopback port serves all five and each
upstream's service root is `http://127.0.0.1:PORT/<upstream>` — the documented paths are appended to it exactly
as to the real service roots.
"""

from __future__ import annotations

import importlib
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

NAMES: tuple[str, ...] = ("carbonmapper", "spaceknow", "epoch", "appeears", "sentinelhub")

# Credentials the simulators accept and geofed sends in demo mode. Not secrets: they only open the simulators.
DEMO_CREDENTIALS: dict[str, dict[str, str]] = {
    "carbonmapper": {"email": "demo@geofed.invalid", "password": "demo-password"},
    "spaceknow": {"username": "demo@geofed.invalid", "password": "demo-password"},
    "epoch": {"token": "demo-epoch-token"},
    "appeears": {"username": "demo", "password": "demo-password"},
    "sentinelhub": {"client_id": "geofed-demo", "client_secret": "demo-secret"},
}


# Auxiliary endpoints that live on other hosts in production (Auth0, Sentinel Hub's identity service) are
# routes of the simulator in demo mode and tests: settings field → path under the simulator's service root.
AUX_PATHS: dict[str, dict[str, str]] = {
    "sentinelhub": {"token_url": "/auth/realms/main/protocol/openid-connect/token"},
    "spaceknow": {"auth_url": "/auth0/oauth/ro"},
}


def geofed_env(base_urls: dict[str, str]) -> dict[str, str]:
    """The GEOFED_* environment that points a geofed server at running simulators, as production would be.

    Used by `geofed simulate`, the tests and the benchmarks: the clients see ordinary configured upstreams.
    """
    env: dict[str, str] = {}
    for name, url in base_urls.items():
        prefix = f"GEOFED_{name.upper()}"
        env[f"{prefix}_URL"] = url
        for key, value in DEMO_CREDENTIALS[name].items():
            env[f"{prefix}_{key.upper()}"] = value
        for key, path in AUX_PATHS.get(name, {}).items():
            env[f"{prefix}_{key.upper()}"] = url + path
    return env


def available() -> list[str]:
    """Names of the simulators whose module exists (the five arrive one upstream issue at a time)."""
    out = []
    for name in NAMES:
        try:
            importlib.import_module(f"simulators.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"simulators.{name}":
                raise
            continue
        out.append(name)
    return out


def create(name: str, **config: Any) -> Starlette:
    module = importlib.import_module(f"simulators.{name}")
    config.setdefault("credentials", DEMO_CREDENTIALS[name])
    return module.create_app(**config)


def build_root_app(names: list[str] | None = None, **config: Any) -> Starlette:
    names = available() if names is None else names
    return Starlette(routes=[Mount(f"/{name}", app=create(name, **config)) for name in names])
