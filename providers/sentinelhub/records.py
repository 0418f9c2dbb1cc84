"""The one mapping from Sentinel Hub Catalog records to geofed's STAC items and collections (STAC 1.1 dicts).

Sentinel Hub is on the STAC face only (its Catalog is a remote STAC API; there is no OGC feature collection),
so there is no `to_feature`. Upstream items are STAC 1.0.0 already; the mapping (digest §4):
- ids stay, `collection` becomes the federated id `sentinelhub:<native id>` (`ctx.collection_id`);
- properties keep their upstream names: the collection's queryables (`eo:cloud_cover`, `sat:orbit_state`,
  `datetime`) are exactly item properties, so a STAC filter evaluated on the item means what it meant upstream;
- the non-standard `crs` member of `geometry` and `proj:geometry` is dropped (GeoJSON has none);
- links pointing at Sentinel Hub are dropped (the bridge adds its own); `derived_from` (the ESA product) stays;
- assets keep their roles (`data` when the upstream gives none); a preview the upstream offers is given the
  role `thumbnail` or `overview` (the documented Catalog has none: its one asset is an `s3://` directory);
- extensions are declared for the fields present (eo, projection, sat, sar, sci), as the upstream does not;
- collection license `proprietary` (deprecated in STAC 1.1) becomes `other`.
"""

from __future__ import annotations

import copy
from typing import Any

from geofed.query import ItemContext

PREFIX = "sentinelhub:"
STAC_VERSION = "1.1.0"
EXTENSIONS = {  # field prefix → schema of the extension version whose fields the upstream sends
    "eo:": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj:": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "sat:": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar:": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "sci:": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
}
KEPT_LINK_RELS = ("derived_from",)
PREVIEW_ROLES = {"thumbnail": "thumbnail", "preview": "thumbnail", "quicklook": "thumbnail",
                 "overview": "overview", "visual": "overview"}  # asset key → STAC role of a preview


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


def _asset(key: str, asset: dict[str, Any]) -> dict[str, Any]:
    roles = list(asset.get("roles") or [])
    preview = PREVIEW_ROLES.get(key.lower())
    if preview and preview not in roles:
        roles.append(preview)
    return {**copy.deepcopy(asset), "roles": roles or ["data"]}


def to_item(record: dict[str, Any], ctx: ItemContext) -> dict[str, Any]:
    """An upstream item (search result or single item) → a STAC 1.1 item of collection `ctx.collection_id`."""
    properties = copy.deepcopy(record.get("properties") or {})
    if "proj:geometry" in properties:
        properties["proj:geometry"] = _strip_crs(properties["proj:geometry"])
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": _extensions(properties),
        "id": record["id"],
        "geometry": _strip_crs(copy.deepcopy(record.get("geometry"))),
        "properties": properties,
        "links": [dict(link) for link in record.get("links") or [] if link.get("rel") in KEPT_LINK_RELS],
        "assets": {key: _asset(key, asset) for key, asset in (record.get("assets") or {}).items()},
        "collection": ctx.collection_id,
    }
    if record.get("bbox") is not None:
        item["bbox"] = list(record["bbox"])
    return item


def to_collection(record: dict[str, Any]) -> dict[str, Any]:
    """An upstream collection → a STAC 1.1 collection `sentinelhub:<id>` without links (the bridge adds them)."""
    data = {key: copy.deepcopy(value) for key, value in record.items() if key not in ("links", "stac_version")}
    data.update({
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": federated_id(record["id"]),
        "links": [],
        "license": "other" if record.get("license") in (None, "proprietary", "various") else record["license"],
        "description": record.get("description") or record.get("title") or record["id"],
        "stac_extensions": _extensions({**record, **(record.get("summaries") or {})}),
    })
    return data
