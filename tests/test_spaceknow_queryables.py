"""`spaceknow-scenes`: every queryable advertised on either face finds the scene that carries its value.

For the OGC face (`/collections/{id}/queryables`, features) and the STAC face (`/stac/collections/{id}/queryables`,
items), each advertised property is read from one scene of a default area of interest and filtered on
(CQL2 text `name='value'`, `name=value`, `name=TIMESTAMP('...')`) within that area; the scene must come back,
and every scene that comes back must carry that value. Also: geometry input that is not WGS84 is a 400.
"""

from __future__ import annotations

from typing import Any

import pytest

from providers.spaceknow.sources import SceneSource

COLLECTION = "spaceknow-scenes"
AREA = SceneSource.collection.options["default_areas"][0]["bbox"]  # Permian Basin: scenes of every dataset
BBOX = ",".join(str(c) for c in AREA)
TOP_LEVEL = ("id", "collection")  # STAC queryables of the item itself, not of its properties

pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")


def condition(name: str, value: Any, schema: dict[str, Any]) -> str:
    prop = name if name.isidentifier() else f'"{name}"'
    if schema.get("format") == "date-time":
        return f"{prop}=TIMESTAMP('{value}')"
    if isinstance(value, bool):
        return f"{prop}={'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"{prop}={value!r}"
    return f"{prop}='{str(value).replace(chr(39), chr(39) * 2)}'"


def value_of(obj: dict[str, Any], name: str) -> Any:
    return obj.get(name) if name in TOP_LEVEL else obj["properties"].get(name)


def walk(queryables: dict[str, Any], one: dict[str, Any], search: Any) -> None:
    names = [n for n in queryables if n != "geometry"]  # both faces list the geometry itself
    assert {"provider", "dataset", "datetime", "view:off_nadir"} <= set(names)
    for name in names:
        value = value_of(one, name)
        assert value is not None, f"{name!r} is advertised, but the scene does not carry it"
        found = search(condition(name, value, queryables[name]))
        assert one["id"] in {f["id"] for f in found}, (name, value)
        assert all(value_of(f, name) == value for f in found), name


def test_every_ogc_queryable_finds_the_feature_carrying_its_value(geofed: Any) -> None:
    answer = geofed.get(f"/collections/{COLLECTION}/queryables", params={"f": "json"})
    assert answer.status_code == 200, answer.text
    first = geofed.get(f"/collections/{COLLECTION}/items", params={"f": "json", "bbox": BBOX, "limit": 1})
    assert first.status_code == 200, first.text
    (feature,) = first.json()["features"]

    def search(cql: str) -> list[dict[str, Any]]:
        response = geofed.get(f"/collections/{COLLECTION}/items",
                              params={"f": "json", "bbox": BBOX, "filter": cql, "limit": 1000})
        assert response.status_code == 200, (cql, response.text)
        return list(response.json()["features"])

    walk(answer.json()["properties"], feature, search)


def test_every_stac_queryable_finds_the_item_carrying_its_value(geofed: Any) -> None:
    answer = geofed.get(f"/stac/collections/{COLLECTION}/queryables")
    assert answer.status_code == 200, answer.text
    first = geofed.get("/stac/search", params={"collections": COLLECTION, "bbox": BBOX, "limit": 1})
    assert first.status_code == 200, first.text
    item = first.json()["features"][0]

    def search(cql: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        body: dict[str, Any] | None = {"collections": [COLLECTION], "bbox": AREA, "filter": cql,
                                       "filter-lang": "cql2-text", "limit": 500}
        while body is not None:
            response = geofed.post("/stac/search", json=body)
            assert response.status_code == 200, (cql, response.text)
            page = response.json()
            found += page["features"]
            nxt = next((link for link in page.get("links", []) if link["rel"] == "next"), None)
            body = {**body, **nxt["body"]} if nxt and nxt.get("body") else None
        return found

    walk(answer.json()["properties"], item, search)


def test_geometry_outside_wgs84_is_a_400_naming_intersects(geofed: Any, sims: Any) -> None:
    far = {"type": "MultiPoint", "coordinates": [[-103.0, 4e16], [-103.0, 32.0]]}  # issue 15: math.ceil(NaN)
    response = geofed.post("/stac/search", json={"collections": [COLLECTION], "intersects": far})
    assert response.status_code == 400, response.text
    assert "intersects" in response.text
    assert not sims.log("spaceknow", "/imagery/search/initiate")
