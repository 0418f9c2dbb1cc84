"""Renders pygeoapi's configuration and OpenAPI document from geofed's settings and the upstream registry.

pygeoapi reads both when `pygeoapi.starlette_app` is imported, so this runs first (see `geofed.app`). Every
pygeoapi link derives from `server.url`, which therefore is `GEOFED_PUBLIC_URL` (a path prefix included).
`resources` are rendered from the registry: each enabled upstream's collections (from the one `Collection`
declaration of each source) and processes; a disabled upstream contributes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from geofed import openapi, registry, upstreams
from geofed.settings import Settings

CONFIG_DIR = Path(os.environ.get("GEOFED_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))


def resources(names: list[str]) -> dict[str, Any]:
    """The pygeoapi resources of these upstreams: collections, then processes."""
    out: dict[str, Any] = {}
    for name in names:
        upstream = registry.get(name)
        for provider in upstream.features:
            source = provider.source_class
            time_field = source.time_field or (source.time_fields[0] if source.time_fields else None)
            out[source.collection.id] = source.collection.pygeoapi_resource(registry.dotted(provider), time_field)
        for processor in upstream.processes:
            out[process_id(processor)] = {"type": "process", "processor": {"name": registry.dotted(processor)}}
    return out


def process_id(processor: type) -> str:
    """A processor class's process id: its `PROCESS_METADATA` (a class attribute, or its module's)."""
    metadata = getattr(processor, "PROCESS_METADATA", None) or vars(sys.modules[processor.__module__])[
        "PROCESS_METADATA"]
    return str(metadata["id"])


def _metadata(base: dict[str, Any], settings: Settings, simulated: list[str]) -> None:
    meta = base["metadata"]
    if simulated:
        desc = meta["identification"]["description"]
        desc["en"] = desc["en"].rstrip() + (
            f" Demo mode: {', '.join(simulated)} served by geofed's built-in simulators, not the real services."
        )
    # contact and project links come from settings, or are left out (never invented)
    contact = {k: v for k, v in {"name": settings.contact_name, "email": settings.contact_email,
                                 "url": settings.contact_url}.items() if v}
    meta["contact"] = contact
    # pygeoapi needs an identification URL: the project's when configured, else this deployment's own
    meta["identification"]["url"] = settings.contact_url or settings.public_url
    if settings.contact_url:
        meta["provider"]["url"] = settings.contact_url


def render(settings: Settings) -> dict[str, Any]:
    base = yaml.safe_load((CONFIG_DIR / "pygeoapi.yml").read_text())
    server = base["server"]
    server["url"] = settings.public_url
    server["bind"] = {"host": settings.host, "port": settings.port}
    data_dir = settings.data_dir.resolve()
    manager = server.get("manager", {})
    # the database URL may carry a password: the rendered file names the variable, the manager reads it
    manager["connection"] = "GEOFED_DATABASE_URL" if settings.database_url else str(data_dir / "jobs.sqlite")
    manager["output_dir"] = str(data_dir / "outputs")
    base["logging"]["level"] = settings.log_level.upper()
    enabled = upstreams.enabled(settings)
    _metadata(base, settings, [n for n in enabled if upstreams.mode(n, settings) == "simulated"])
    base["resources"] = resources(enabled)
    if settings.pubsub_url:  # OGC API – Publish-Subscribe: the broker and each watched collection's channel
        from geofed.alerts.watch import pubsub_config

        pubsub_config(base, settings)
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
    document = openapi.ogc(get_oas(config), settings)  # + the statuses geofed itself answers
    openapi_path.write_text(yaml.safe_dump(document, default_flow_style=False, sort_keys=False))
    os.environ["PYGEOAPI_CONFIG"] = str(config_path)
    os.environ["PYGEOAPI_OPENAPI"] = str(openapi_path)
    os.environ.pop("PYGEOAPI_ASYNCAPI", None)
    if "pubsub" in config:  # `/asyncapi`: the channels, one per collection
        from geofed.alerts.notify import asyncapi

        asyncapi_path = out / "pygeoapi-asyncapi.yml"
        asyncapi_path.write_text(yaml.safe_dump(asyncapi(config), default_flow_style=False, sort_keys=False))
        os.environ["PYGEOAPI_ASYNCAPI"] = str(asyncapi_path)
    return config_path, openapi_path
