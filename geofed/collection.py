"""The one declaration of a geofed collection, rendered into both faces.

A source declares its collection once (`Collection(...)` on its class in `providers/<upstream>/sources.py`):
id, title, description, keywords, license, providers, spatial and temporal extent, links, item assets and STAC
extensions. `pygeoapi_resource()` renders the OGC face's resource (pygeoapi config), `stac()` the STAC
collection, so the two never drift apart. Values the upstream does not give are left out, never invented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
WORLD = (-180.0, -90.0, 180.0, 90.0)


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    keywords: tuple[str, ...] = ()
    license: str = "proprietary"  # SPDX id, "proprietary" or "other"
    providers: tuple[dict[str, Any], ...] = ()  # STAC providers: {name, roles, url}
    bbox: tuple[float, float, float, float] = WORLD
    interval: tuple[str | None, str | None] = (None, None)  # RFC 3339; None = open / unknown
    links: tuple[dict[str, Any], ...] = ()  # external links (about, license, canonical ...)
    item_assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    stac_extensions: tuple[str, ...] = ()
    summaries: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the source

    def pygeoapi_resource(self, provider_class: str, time_field: str | None = None) -> dict[str, Any]:
        """The pygeoapi resource of this collection, served by `provider_class` (dotted path)."""
        provider: dict[str, Any] = {"type": "feature", "name": provider_class, "data": self.id, "id_field": "id"}
        if time_field:
            provider["time_field"] = time_field
        if self.options:
            provider["options"] = dict(self.options)
        from geofed.query.parse import instant  # here: geofed.query's package imports this module

        # pygeoapi compares its extents as datetimes (YAML timestamps), never as strings
        temporal: dict[str, Any] = {"begin": instant(self.interval[0]), "end": instant(self.interval[1])}
        return {
            "type": "collection",
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "links": [dict(link) for link in self.links],
            "extents": {"spatial": {"bbox": list(self.bbox), "crs": CRS84}, "temporal": temporal},
            "providers": [provider],
        }

    def stac(self) -> dict[str, Any]:
        """The STAC collection (a dict without geofed's own links: the bridge adds self/root/items)."""
        out: dict[str, Any] = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "license": self.license,
            "providers": [dict(p) for p in self.providers],
            "extent": {"spatial": {"bbox": [list(self.bbox)]}, "temporal": {"interval": [list(self.interval)]}},
            "links": [dict(link) for link in self.links],
        }
        if self.stac_extensions:
            out["stac_extensions"] = list(self.stac_extensions)
        if self.item_assets:
            out["item_assets"] = {k: dict(v) for k, v in self.item_assets.items()}
        if self.summaries:
            out["summaries"] = dict(self.summaries)
        return out
