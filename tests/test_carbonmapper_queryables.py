"""Issue 12 §3: on each face, every queryable a CarbonMapper collection advertises is a property its features
(OGC) / items (STAC) carry, under that name, and filtering on the value one of them carries finds it.

The test walks the queryables documents (no hand list): for each queryable it asks for one object carrying a
value (`name IS NOT NULL`), then filters on `name = <that value>` around the object's location and checks the
object is among the matches.
"""

from __future__ import annotations

from typing import Any

import pytest

COLLECTIONS = ["carbonmapper-plumes", "carbonmapper-sources", "carbonmapper-scenes"]
NOT_FILTERABLE = {"geometry"}  # spatial: filtered with bbox / S_INTERSECTS, not `=`


def literal(value: Any, schema: dict[str, Any]) -> str:
    """A CQL2 text literal for `value` as the queryable's schema types it."""
    if schema.get("format") in ("date-time", "date"):
        return f"TIMESTAMP('{value}')"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def around(obj: dict[str, Any]) -> str:
    """A small bbox around the object (narrows the search without touching the queryable under test)."""
    w, s, e, n = obj.get("bbox") or [*obj["geometry"]["coordinates"][:2], *obj["geometry"]["coordinates"][:2]]
    pad = 1e-4
    return ",".join(str(v) for v in (w - pad, s - pad, e + pad, n + pad))


def value_of(obj: dict[str, Any], name: str) -> Any:
    """A property's value, or a top-level member's (`id`, a STAC item's `collection`)."""
    props = obj.get("properties") or {}
    return props[name] if name in props else obj.get(name)


class Face:
    def __init__(self, geofed: Any, collection: str, face: str) -> None:
        self.geofed, self.collection, self.face = geofed, collection, face

    def queryables(self) -> dict[str, dict[str, Any]]:
        path = (f"/collections/{self.collection}/queryables" if self.face == "ogc"
                else f"/stac/collections/{self.collection}/queryables")
        response = self.geofed.get(path, params={"f": "json"} if self.face == "ogc" else None)
        assert response.status_code == 200, response.text
        return response.json()["properties"]

    def search(self, cql: str, limit: int, bbox: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.face == "ogc":
            params: dict[str, Any] = {"filter": cql, "limit": limit, "f": "json"}
            path = f"/collections/{self.collection}/items"
        else:
            params = {"collections": self.collection, "filter": cql, "filter-lang": "cql2-text", "limit": limit}
            path = "/stac/search"
        if bbox:
            params["bbox"] = bbox
        response = self.geofed.get(path, params=params, timeout=300)
        while True:
            assert response.status_code == 200, f"{self.face} {cql}: {response.text[:500]}"
            body = response.json()
            out += body["features"]
            nxt = [link for link in body.get("links", []) if link["rel"] == "next"]
            if not nxt or len(out) >= limit or not body["features"]:
                return out
            response = self.geofed.get(nxt[0]["href"].removeprefix(self.geofed.url), timeout=300)


@pytest.mark.parametrize("face", ["ogc", "stac"])
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_queryable_filters_on_its_own_value(geofed: Any, collection: str, face: str) -> None:
    side = Face(geofed, collection, face)
    queryables = side.queryables()
    assert queryables, "no queryables advertised"
    unfilled = []
    for name, schema in queryables.items():
        if name in NOT_FILTERABLE:
            continue
        carriers = side.search(f'"{name}" IS NOT NULL', limit=1)
        if not carriers:
            unfilled.append(name)
            continue
        obj = carriers[0]
        value = value_of(obj, name)
        assert value is not None, f"{face} {collection}: {name} IS NOT NULL matched an object without it"
        cql = f'"{name}" = {literal(value, schema)}'
        found = side.search(cql, limit=10_000, bbox=around(obj))
        assert obj["id"] in {f["id"] for f in found}, f"{face} {collection}: {cql} does not find {obj['id']}"
        assert all(value_of(f, name) == value for f in found if not schema.get("format")), cql
    # a queryable no object carries cannot be tested: at most the rare ones the simulator leaves empty
    assert len(unfilled) <= 1, f"{face} {collection}: no object carries {unfilled}"


def test_stac_filter_finds_what_the_ogc_filter_finds(geofed: Any, sims: Any) -> None:
    """The issue's finding: `instrument='emi'` found 1 896 plumes on the OGC face and none on the STAC face."""
    truth = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated",
                     params={"instruments": "emi", "limit": 1}).json()["total_count"]
    ogc = geofed.get("/collections/carbonmapper-plumes/items",
                     params={"filter": "instrument='emi'", "resulttype": "hits", "f": "json"}).json()
    stac = geofed.get("/stac/search", params={"collections": "carbonmapper-plumes", "filter": "instrument='emi'",
                                              "limit": 5}, timeout=300)
    assert stac.status_code == 200, stac.text
    body = stac.json()
    assert ogc["numberMatched"] == truth > 0
    assert body["numberMatched"] == truth and len(body["features"]) == 5
    assert all(f["properties"]["instrument"] == "emi" and f["properties"]["instruments"] == ["emi"]
               for f in body["features"])


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_items_and_collections_are_valid_stac(geofed: Any, collection: str, stac_validate: Any) -> None:
    described = geofed.get(f"/stac/collections/{collection}").json()
    assert stac_validate(described) == []
    assert described["extent"]["temporal"]["interval"][0][0] is not None  # a real temporal extent
    items = geofed.get(f"/stac/collections/{collection}/items", params={"limit": 20}, timeout=300).json()
    assert len(items["features"]) == 20
    errors = [e for item in items["features"] for e in stac_validate(item)]
    assert errors == []
    for item in items["features"]:
        assert item.get("bbox") != [0, 0, 0, 0] and item["geometry"] is not None
        if collection == "carbonmapper-plumes":  # STAC Browser previews the plume image
            roles = {role for asset in item["assets"].values() for role in asset.get("roles", [])}
            assert "thumbnail" in roles and item["assets"]["plume_png"]["roles"][0] == "thumbnail"
