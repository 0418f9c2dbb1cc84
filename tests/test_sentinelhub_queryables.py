"""Every queryable a Sentinel Hub collection advertises on the STAC face finds the item that carries its value.

Sentinel Hub is on the STAC face only (its Catalog is federated; there are no OGC feature collections), so the
walk is over `/stac/collections/{id}/queryables`: for each advertised queryable, the value one item carries is
filtered on (CQL2 text `name='value'`, `name=value`, `name=TIMESTAMP('...')`, `S_INTERSECTS` for the
footprint) and that item must come back.
The collections expected are the simulator's own.
"""

from __future__ import annotations

from typing import Any

from shapely.geometry import shape

from simulators.sentinelhub.data import COLLECTIONS as SIMULATED_COLLECTIONS


def _value(item: dict[str, Any], name: str) -> Any:
    """What the item carries for a queryable: a top-level member (`id`, `collection`, `geometry`) or a property."""
    return item.get(name) if name in ("id", "collection", "geometry") else item["properties"].get(name)


def _literal(name: str, value: Any, schema: dict[str, Any]) -> str:
    if name == "geometry":
        point = shape(value).representative_point()
        return f"S_INTERSECTS(geometry,POINT({point.x} {point.y}))"
    if schema.get("format") == "date-time" or name == "datetime":
        return f"{name}=TIMESTAMP('{value}')"
    if isinstance(value, bool):
        return f"{name}={str(value).lower()}"
    if isinstance(value, int | float):
        return f"{name}={value!r}"
    escaped = str(value).replace("'", "''")
    return f"{name}='{escaped}'"


def _search(geofed: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    response = geofed.get("/stac/search", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["features"])


def test_every_stac_queryable_filters_to_the_item_carrying_its_value(geofed: Any) -> None:
    listed = geofed.get("/stac/collections", params={"limit": 1000}).json()["collections"]
    ids = sorted(c["id"] for c in listed if c["id"].startswith("sentinelhub:"))
    assert ids == sorted(f"sentinelhub:{native}" for native in SIMULATED_COLLECTIONS)
    ogc = {c["id"] for c in geofed.get("/collections", params={"f": "json"}).json()["collections"]}
    assert not {c for c in ogc if c.startswith("sentinelhub")}  # no OGC face: nothing to walk there

    for collection in ids:
        answer = geofed.get(f"/stac/collections/{collection}/queryables")
        assert answer.status_code == 200, answer.text
        queryables = answer.json()["properties"]
        assert queryables, collection
        (item,) = _search(geofed, {"collections": collection, "limit": 1})
        when = item["properties"]["datetime"]
        for name, schema in queryables.items():
            value = _value(item, name)
            assert value is not None, f"{collection} advertises {name!r}, which its items do not carry"
            params = {"collections": collection, "filter": _literal(name, value, schema),
                      "filter-lang": "cql2-text", "limit": 100}
            if name != "datetime":
                params["datetime"] = when  # narrows the search to the item's instant; the filter does the rest
            found = _search(geofed, params)
            assert item["id"] in {f["id"] for f in found}, (collection, name, value)
            if name != "geometry":
                carried = [_value(f, name) for f in found]
                assert all(v == value for v in carried), (collection, name, carried)
