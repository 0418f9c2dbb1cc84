"""The one mapping of the inventory's output features: a plume, source or plot feature (as its collection's
OGC face gives it) → a flat GeoJSON feature for the inventory's FeatureCollection (QGIS / OGR open it as one layer
per geometry type). Each carries `collection` (the geofed collection it comes from), `kind` and `href` (its item
in geofed), plus the scalar properties named below; nested values (Epoch's yearly series, metadata) stay in the
item behind `href`. The inventory has no collection of its own, hence no STAC item mapping.
"""

from __future__ import annotations

from typing import Any

from geofed.settings import get_settings

KINDS: dict[str, tuple[str, tuple[str, ...]]] = {  # kind → (geofed collection, properties kept)
    "plume": ("carbonmapper-plumes", ("gas", "sector", "emission_auto", "emission_uncertainty_auto",
                                      "instrument", "plume_quality", "scene_timestamp")),
    "source": ("carbonmapper-sources", ("gas", "sector", "emission_auto", "emission_uncertainty_auto",
                                        "persistence", "plume_count", "timestamp_min", "timestamp_max")),
    "plot": ("epoch-plots", ("plotid", "collection_id", "facility_id", "area", "monitoring_start",
                             "monitoring_end", "luc_tco2eyear", "biogenic_tco2eyear", "soc_tco2eyear",
                             "removal_tco2eyear")),
}
STAC_NAMES: dict[str, str] = {}  # the inventory's features are not STAC items


def to_feature(kind: str, feature: dict[str, Any]) -> dict[str, Any]:
    collection, kept = KINDS[kind]
    ident = str(feature.get("id"))
    source = feature.get("properties") or {}
    props: dict[str, Any] = {"collection": collection, "kind": kind, "name": ident,
                             "href": f"{get_settings().public_url}/collections/{collection}/items/{ident}"}
    props.update({name: source.get(name) for name in kept})
    return {"type": "Feature", "id": f"{collection}/{ident}", "geometry": feature.get("geometry"),
            "properties": props}
