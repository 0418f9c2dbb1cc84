"""The one mapping from Sentinel Hub Catalog records to geofed's STAC items and collections (STAC 1.1, pystac).

Upstream items are STAC 1.0.0 already; the mapping (digest §4):
- ids stay, `collection` becomes the federated id `sentinelhub:<native id>`;
- the non-standard `crs` member of `geometry` and `proj:geometry` is dropped (GeoJSON has none);
- links pointing at Sentinel Hub are dropped (the bridge adds its own); `derived_from` (the ESA product) stays;
- extensions are declared for the fields present (eo, projection, sat, sar), as the upstream does not;
- collection license `proprietary` (deprecated in STAC 1.1) becomes `other`.
"""

from __future__ import annotations

import copy
from typing import Any

import pystac

NAME = "sentinelhub"
PREFIX = f"{NAME}:"
STAC_VERSION = "1.1.0"
EXTENSIONS = {  # field prefix → schema of the extension version whose fields the upstream sends
    "eo:": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj:": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "sat:": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar:": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "sci:": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
}
KEPT_LINK_RELS = ("derived_from",)


def federated_id(native_id: str) -> str:
    return f"{PREFIX}{native_id}"


def native_id(collection_id: str) -> str:
    return collection_id[len(PREFIX):] if collection_id.startswith(PREFIX) else collection_id


def _extensions(fields: dict[str, Any]) -> list[str]:
    return [url for prefix, url in EXTENSIONS.items() if any(key.startswith(prefix) for key in fields)]


def _strip_crs(geometry: Any) -> Any:
    if isinstance(geometry, dict):
        return {k: v for k, v in geometry.items() if k != "crs"}
    return geometry


def to_item(record: dict[str, Any]) -> pystac.Item:
    """An upstream item (search result or single item) → a STAC 1.1 item of collection `sentinelhub:<id>`."""
    properties = copy.deepcopy(record.get("properties") or {})
    if "proj:geometry" in properties:
        properties["proj:geometry"] = _strip_crs(properties["proj:geometry"])
    data = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": _extensions(properties),
        "id": record["id"],
        "geometry": _strip_crs(record.get("geometry")),
        "bbox": record.get("bbox"),
        "properties": properties,
        "assets": {key: {**asset, "roles": asset.get("roles", ["data"])}
                   for key, asset in (record.get("assets") or {}).items()},
        "links": [link for link in record.get("links") or [] if link.get("rel") in KEPT_LINK_RELS],
        "collection": federated_id(str(record.get("collection", ""))),
    }
    return pystac.Item.from_dict(data, migrate=False, preserve_dict=False)


def to_collection(record: dict[str, Any]) -> pystac.Collection:
    """An upstream collection → a STAC 1.1 collection `sentinelhub:<id>` without links (the bridge adds them)."""
    data = {key: copy.deepcopy(value) for key, value in record.items() if key not in ("links", "stac_version")}
    data.update({
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": federated_id(record["id"]),
        "links": [],
        "license": "other" if record.get("license") in (None, "proprietary", "various") else record["license"],
        "description": record.get("description") or record.get("title") or record["id"],
    })
    data["stac_extensions"] = _extensions({**record, **(record.get("summaries") or {})})
    return pystac.Collection.from_dict(data, migrate=False, preserve_dict=False)


def item_dict(record: dict[str, Any]) -> dict[str, Any]:
    return to_item(record).to_dict(include_self_link=False, transform_hrefs=False)


def collection_dict(record: dict[str, Any]) -> dict[str, Any]:
    out = to_collection(record).to_dict(include_self_link=False, transform_hrefs=False)
    out["links"] = []
    return out
