"""Renders pygeoapi's configuration and OpenAPI document from geofed's settings.

pygeoapi reads both when `pygeoapi.starlette_app` is imported, so this runs first (see `geofed.app`). Every
pygeoapi link derives from `server.url`, which therefore is `GEOFED_PUBLIC_URL` (a path prefix included).
Each upstream contributes `config/resources/<upstream>.yml`; an upstream that is disabled contributes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from geofed import upstreams
from geofed.settings import UPSTREAMS, Settings

CONFIG_DIR = Path(os.environ.get("GEOFED_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))


def render(settings: Settings) -> dict[str, Any]:
    base = yaml.safe_load((CONFIG_DIR / "pygeoapi.yml").read_text())
    server = base["server"]
    server["url"] = settings.public_url
    server["bind"] = {"host": settings.host, "port": settings.port}
    data_dir = settings.data_dir.resolve()
    manager = server.get("manager", {})
    if manager.get("name") == "TinyDB":
        manager["connection"] = str(data_dir / "jobs.tinydb.json")
        manager["output_dir"] = str(data_dir / "outputs")
    else:
        # the database URL may carry a password: the rendered file names the variable, the manager reads it
        manager["connection"] = "GEOFED_DATABASE_URL" if settings.database_url else str(data_dir / "jobs.sqlite")
        manager["output_dir"] = str(data_dir / "outputs")
    base["logging"]["level"] = settings.log_level.upper()

    simulated = [n for n in UPSTREAMS if upstreams.mode(n, settings) == "simulated"]
    if simulated:
        desc = base["metadata"]["identification"]["description"]
        desc["en"] = desc["en"].rstrip() + (
            f" Demo mode: {', '.join(simulated)} served by geofed's built-in simulators, not the real services."
        )

    resources: dict[str, Any] = {}
    for name in UPSTREAMS:
        fragment = CONFIG_DIR / "resources" / f"{name}.yml"
        if upstreams.mode(name, settings) == "disabled" or not fragment.exists():
            continue
        resources.update(yaml.safe_load(fragment.read_text()) or {})
    base["resources"] = resources
    return base


def write(settings: Settings) -> tuple[Path, Path]:
    """Writes `pygeoapi-config.yml` and `pygeoapi-openapi.yml` under the data dir and points pygeoapi at them."""
    from pygeoapi.openapi import get_oas

    out = settings.data_dir.resolve()
    (out / "outputs").mkdir(parents=True, exist_ok=True)
    config = render(settings)
    config_path = out / "pygeoapi-config.yml"
    openapi_path = out / "pygeoapi-openapi.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    openapi_path.write_text(yaml.safe_dump(get_oas(config), default_flow_style=False, sort_keys=False))
    os.environ["PYGEOAPI_CONFIG"] = str(config_path)
    os.environ["PYGEOAPI_OPENAPI"] = str(openapi_path)
    return config_path, openapi_path
