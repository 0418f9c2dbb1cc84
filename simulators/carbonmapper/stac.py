"""The CarbonMapper STAC API (`/api/v1/stac/`): landing, conformance, collections, items, GET/POST search.

Collections are versioned products (ids as in `observed.md`): L2B scene products (item id = scene name), L3A
plume IME products and L4A emission products (item id = plume name), built from the same plumes and scenes as
the REST catalog. Choices where the doc is silent (`create_app(**config)` keys):
- paging: `offset`/`limit` (`offset` a query parameter even for POST); `next` links are emitted (POST ones
  carry `method`, `body`, `merge: false`); responses carry `context` {returned, limit, matched};
- `bbox` on GET is one comma-joined value (repeated keys → 422); `intersects` is a GeoJSON *string*;
- order: datetime descending, then collection, then id; `sortby` is honoured (and the sort extension
  advertised) only with `stac_sortby=True` — off by default, because the doc does not list it;
- `stac_max_limit` (1000) caps `limit`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import shapely
import shapely.geometry
import shapely.prepared
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simulators.carbonmapper.common import (
    Invalid,
    RateLimiter,
    asset_url,
    check_bbox,
    guarded,
    in_interval,
    interval,
    not_found,
)
from simulators.carbonmapper.data import INSTRUMENT_INFO, Catalog, iso
from simulators.framework import SimulatorState, service_root

ROOT = "api/v1/stac"
COLLECTIONS: dict[str, dict[str, Any]] = {
    "l2b-ch4-mfa-v3a": {"title": "L2B CH4 concentration (matched filter, v3a)", "kind": "scene", "gas": "CH4"},
    "l2b-co2-mfal-v3a": {"title": "L2B CO2 concentration (matched filter, v3a)", "kind": "scene", "gas": "CO2"},
    "l3a-ime-ch4-mfa-v3a": {"title": "L3A CH4 plume IME (v3a)", "kind": "plume", "gas": "CH4"},
    "l3a-ime-co2-mfal-v3a": {"title": "L3A CO2 plume IME (v3a)", "kind": "plume", "gas": "CO2"},
    "l4a-combined-ch4-v3a": {"title": "L4A CH4 plume emission rates (v3a)", "kind": "emission", "gas": "CH4"},
    "l4a-co2-mfal-v3a": {"title": "L4A CO2 plume emission rates (v3a)", "kind": "emission", "gas": "CO2"},
}
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
SORT_CONFORMANCE = "https://api.stacspec.org/v1.0.0/item-search#sort"


def _polygon(b: list[float]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]],
                                                [b[0], b[1]]]]}


def build_items(cat: Catalog) -> list[dict[str, Any]]:
    """Every STAC item (without links), in the default order: datetime desc, collection, id."""
    items: list[dict[str, Any]] = []
    for scene in cat.scenes:
        inst = INSTRUMENT_INFO[scene["instrument"]]
        key = f"{inst.code}/{scene['timestamp']:%Y}/{scene['name']}/{scene['name']}"
        for cid in ("l2b-ch4-mfa-v3a", "l2b-co2-mfal-v3a"):
            if cid.startswith("l2b-co2") and not inst.co2:
                continue
            gas = COLLECTIONS[cid]["gas"]
            items.append({
                "id": scene["name"], "collection": cid, "geometry": _polygon(scene["bounds"]),
                "bbox": scene["bounds"], "_dt": scene["timestamp"],
                "properties": {"platform": inst.platform, "instruments": [inst.code], "gsd": inst.gsd,
                               "gas": gas, "mission_phase": scene["mission_phase"],
                               "plume_count": scene["published_plume_count"]},
                "assets": {"cmf": (f"{key}_{gas.lower()}_cmf.tif", "image/tiff; application=geotiff", ["data"]),
                           "rgb": (f"{key}_rgb.png", "image/png", ["visual"])},
            })
    for p in cat.plumes:
        inst = INSTRUMENT_INFO[p["instrument"]]
        slug = "ch4" if p["gas"] == "CH4" else "co2"
        props = {"platform": inst.platform, "instruments": [inst.code], "gsd": p["gsd"], "gas": p["gas"],
                 "sector": p["sector"], "plume_quality": p["plume_quality"], "scene_id": p["scene_id"],
                 "published": iso(p["published_at"]), "view:off_nadir": p["off_nadir"]}
        point = p["geometry_json"]["coordinates"]
        common = {"id": p["plume_id"], "geometry": {"type": "Point", "coordinates": point},
                  "bbox": [point[0], point[1], point[0], point[1]], "_dt": p["scene_timestamp"]}
        ime = next(c for c in COLLECTIONS if c.startswith(f"l3a-ime-{slug}"))
        items.append({**common, "collection": ime, "properties": props, "assets": {
            "plume_tif": (p["plume_tif"], "image/tiff; application=geotiff", ["data"]),
            "plume_png": (p["plume_png"], "image/png", ["overlay"]),
            "con_tif": (p["con_tif"], "image/tiff; application=geotiff", ["data"])}})
        if p["emission_auto"] is not None:
            l4 = next(c for c in COLLECTIONS if c.startswith("l4a-") and slug in c)
            items.append({**common, "collection": l4, "properties": {
                **props, "emission_auto": p["emission_auto"],
                "emission_uncertainty_auto": p["emission_uncertainty_auto"],
                "wind_speed_avg_auto": p["wind_speed_avg_auto"]},
                "assets": {"rgb_png": (p["rgb_png"], "image/png", ["visual", "thumbnail"])}})
    items.sort(key=lambda i: i["id"])
    items.sort(key=lambda i: i["collection"])
    items.sort(key=lambda i: i["_dt"], reverse=True)
    return items


def routes(state: SimulatorState, limiter: RateLimiter) -> list[BaseRoute]:
    optional = guarded(state, limiter)
    cfg = state.config

    def items_of(request: Request) -> list[dict[str, Any]]:
        app_state = request.app.state
        if getattr(app_state, "stac_items", None) is None:
            app_state.stac_items = build_items(app_state.catalog)
            app_state.stac_index = {(i["collection"], i["id"]): i for i in app_state.stac_items}
            by_collection: dict[str, list[dict[str, Any]]] = {}
            for rank, i in enumerate(app_state.stac_items):
                i["_rank"] = rank
                by_collection.setdefault(i["collection"], []).append(i)
            app_state.stac_by_collection = by_collection
            app_state.stac_tree = shapely.STRtree([shapely.box(*i["bbox"]) for i in app_state.stac_items])
        return app_state.stac_items

    def candidates(request: Request, collections: Any, area: Any) -> list[dict[str, Any]]:
        """The items a search can match, in the default order: those whose bbox meets the search area (an R-tree
        query), else only the named collections' when it names some, else all."""
        every = items_of(request)
        if area is not None:
            return [every[i] for i in sorted(request.app.state.stac_tree.query(area).tolist())]
        if not collections or not isinstance(collections, list):
            return every
        by_collection = request.app.state.stac_by_collection
        chosen = [i for c in dict.fromkeys(map(str, collections)) for i in by_collection.get(c, [])]
        return sorted(chosen, key=lambda i: i["_rank"]) if len(collections) > 1 else chosen

    def extent_of(request: Request, cid: str) -> tuple[list[float], list[Any]]:
        """A collection's bbox and first/last datetimes, computed once (the items never change)."""
        extents = getattr(request.app.state, "stac_extents", None)
        if extents is None:
            extents = request.app.state.stac_extents = {}
        if cid not in extents:
            mine = [i for i in items_of(request) if i["collection"] == cid]
            xs = [c for i in mine for c in (i["bbox"][0], i["bbox"][2])] or [-180.0, 180.0]
            ys = [c for i in mine for c in (i["bbox"][1], i["bbox"][3])] or [-90.0, 90.0]
            times = [i["_dt"] for i in mine]
            extents[cid] = ([min(xs), min(ys), max(xs), max(ys)], [min(times), max(times)] if times else [])
        return extents[cid]

    def base(request: Request) -> str:
        return f"{service_root(request)}{ROOT}"

    def render(request: Request, item: dict[str, Any]) -> dict[str, Any]:
        b = base(request)
        coll = f"{b}/collections/{item['collection']}"
        return {
            "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [], "id": item["id"],
            "collection": item["collection"], "geometry": item["geometry"], "bbox": item["bbox"],
            "properties": {"datetime": iso(item["_dt"]), **item["properties"]},
            "assets": {k: {"href": asset_url(request, href), "type": media, "roles": roles}
                       for k, (href, media, roles) in item["assets"].items()},
            "links": [{"rel": "self", "href": f"{coll}/items/{item['id']}", "type": "application/geo+json"},
                      {"rel": "parent", "href": coll, "type": "application/json"},
                      {"rel": "collection", "href": coll, "type": "application/json"},
                      {"rel": "root", "href": f"{b}/", "type": "application/json"}],
        }

    def collection_json(request: Request, cid: str) -> dict[str, Any]:
        b = base(request)
        info = COLLECTIONS[cid]
        bbox, times = extent_of(request, cid)
        return {
            "type": "Collection", "stac_version": "1.0.0", "id": cid, "title": info["title"],
            "description": f"Carbon Mapper {info['title']}", "license": "CC-BY-4.0",
            "keywords": ["carbon mapper", info["gas"].lower(), info["kind"]],
            "extent": {"spatial": {"bbox": [bbox]},
                       "temporal": {"interval": [[iso(times[0]) if times else None,
                                                  iso(times[1]) if times else None]]}},
            "links": [{"rel": "self", "href": f"{b}/collections/{cid}", "type": "application/json"},
                      {"rel": "items", "href": f"{b}/collections/{cid}/items", "type": "application/geo+json"},
                      {"rel": "root", "href": f"{b}/", "type": "application/json"},
                      {"rel": "parent", "href": f"{b}/", "type": "application/json"}],
        }

    @optional
    async def landing(request: Request) -> Response:
        b = base(request)
        links = [{"rel": "self", "href": f"{b}/", "type": "application/json"},
                 {"rel": "root", "href": f"{b}/", "type": "application/json"},
                 {"rel": "conformance", "href": f"{b}/conformance", "type": "application/json"},
                 {"rel": "data", "href": f"{b}/collections", "type": "application/json"},
                 {"rel": "search", "href": f"{b}/search", "type": "application/geo+json", "method": "GET"},
                 {"rel": "search", "href": f"{b}/search", "type": "application/geo+json", "method": "POST"}]
        links += [{"rel": "child", "href": f"{b}/collections/{c}", "type": "application/json"} for c in COLLECTIONS]
        return JSONResponse({"type": "Catalog", "stac_version": "1.0.0", "id": "carbonmapper-stac",
                             "title": "Carbon Mapper STAC API", "description": "Carbon Mapper data products",
                             "conformsTo": conformance_list(), "links": links})

    def conformance_list() -> list[str]:
        return CONFORMANCE + ([SORT_CONFORMANCE] if cfg.get("stac_sortby") else [])

    @optional
    async def conformance(request: Request) -> Response:
        return JSONResponse({"conformsTo": conformance_list()})

    @optional
    async def collections(request: Request) -> Response:
        b = base(request)
        return JSONResponse({"collections": [collection_json(request, c) for c in COLLECTIONS],
                             "links": [{"rel": "self", "href": f"{b}/collections"},
                                       {"rel": "root", "href": f"{b}/"}]})

    @optional
    async def collection(request: Request) -> Response:
        cid = request.path_params["collection_id"]
        return JSONResponse(collection_json(request, cid)) if cid in COLLECTIONS else not_found("Collection")

    @optional
    async def item(request: Request) -> Response:
        items_of(request)
        found = request.app.state.stac_index.get((request.path_params["collection_id"],
                                                  request.path_params["feature_id"]))
        return JSONResponse(render(request, found)) if found else not_found("Item")

    @optional
    async def items(request: Request) -> Response:
        cid = request.path_params["collection_id"]
        if cid not in COLLECTIONS:
            return not_found("Collection")
        params = _get_params(request)
        params["collections"] = [cid]
        return search_response(request, params, f"{base(request)}/collections/{cid}/items")

    @optional
    async def search(request: Request) -> Response:
        if request.method == "POST":
            try:
                params = await request.json()
            except ValueError:
                raise Invalid("body", "body must be JSON", "body") from None
            if not isinstance(params, dict):
                raise Invalid("body", "body must be a JSON object", "body")
        else:
            params = _get_params(request)
        return search_response(request, params, f"{base(request)}/search")

    def search_response(request: Request, params: dict[str, Any], href: str) -> Response:
        offset = _int(request.query_params.get("offset", params.get("offset", 0)), "offset", 0)
        limit = _int(params.get("limit", 10), "limit", 1, cfg.get("stac_max_limit", 1000))
        keep, area = _predicate(params)
        matched = [i for i in candidates(request, params.get("collections"), area) if keep(i)]
        if cfg.get("stac_sortby") and params.get("sortby"):
            matched = _sorted(matched, params["sortby"])
        page = matched[offset:offset + limit]
        links: list[dict[str, Any]] = []
        if offset + limit < len(matched):
            if request.method == "POST":
                body = {k: v for k, v in params.items() if k != "offset"}
                links.append({"rel": "next", "href": f"{href}?offset={offset + limit}", "method": "POST",
                              "body": body, "merge": False, "type": "application/geo+json"})
            else:
                query = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
                links.append({"rel": "next", "href": f"{href}?{urlencode([*query, ('offset', offset + limit)])}",
                              "type": "application/geo+json", "method": "GET"})
        return JSONResponse({"type": "FeatureCollection", "features": [render(request, i) for i in page],
                             "links": links,
                             "context": {"returned": len(page), "limit": limit, "matched": len(matched)}})

    return [
        Route(f"/{ROOT}/", landing),
        Route(f"/{ROOT}", landing),
        Route(f"/{ROOT}/conformance", conformance),
        Route(f"/{ROOT}/collections", collections),
        Route(f"/{ROOT}/collections/{{collection_id}}", collection),
        Route(f"/{ROOT}/collections/{{collection_id}}/items", items),
        Route(f"/{ROOT}/collections/{{collection_id}}/items/{{feature_id}}", item),
        Route(f"/{ROOT}/search", search, methods=["GET", "POST"]),
    ]


def _int(raw: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise Invalid(name, "Input should be a valid integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise Invalid(name, f"Input should be between {minimum} and {maximum}")
    return value


def _get_params(request: Request) -> dict[str, Any]:
    q = request.query_params
    out: dict[str, Any] = {}
    for key in ("limit", "datetime", "intersects", "gas", "sector", "sortby"):
        if q.get(key) is not None:
            out[key] = q[key]
    bboxes = q.getlist("bbox")
    if len(bboxes) > 1:
        raise Invalid("bbox", "bbox is one comma-separated string on the STAC API")
    if bboxes:
        out["bbox"] = bboxes[0].split(",")
    for key in ("ids", "collections", "instruments"):
        values = [v for raw in q.getlist(key) for v in raw.split(",") if v]
        if values:
            out[key] = values
    return out


def _predicate(params: dict[str, Any]) -> tuple[Any, Any]:
    """(keep(item) → bool, the search area as a shapely geometry or None)."""
    bbox = params.get("bbox")
    if bbox is not None:
        try:
            bbox = check_bbox([float(v) for v in bbox])
        except (TypeError, ValueError):
            raise Invalid("bbox", "bbox must be 4 numbers") from None
    area = shapely.geometry.box(*bbox) if bbox else None
    if params.get("intersects") is not None:
        raw = params["intersects"]
        if not isinstance(raw, str):
            raise Invalid("intersects", "Input should be a valid string")
        try:
            area = shapely.geometry.shape(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise Invalid("intersects", "intersects must be a GeoJSON geometry string") from None
    when = interval(params.get("datetime"), "datetime")
    # computed once per search, not per item: the simulator's CPU is the demo server's CPU
    bounds = area.bounds if area is not None else (0.0, 0.0, 0.0, 0.0)
    area_is_box = area is not None and area.equals(shapely.geometry.box(*bounds))
    prepared = shapely.prepared.prep(area) if area is not None else None
    ids = set(params.get("ids") or [])
    collections = set(params.get("collections") or [])
    gas, sector = params.get("gas"), params.get("sector")
    instruments = set(params.get("instruments") or [])

    def keep(item: dict[str, Any]) -> bool:
        props = item["properties"]
        if collections and item["collection"] not in collections:
            return False
        if ids and item["id"] not in ids:
            return False
        if (gas and props.get("gas") != gas) or (sector and props.get("sector") != sector):
            return False
        if instruments and not instruments & set(props["instruments"]):
            return False
        if not in_interval(item["_dt"], when):
            return False
        if area is not None:
            b = item["bbox"]
            if not (b[0] <= bounds[2] and bounds[0] <= b[2] and b[1] <= bounds[3] and bounds[1] <= b[3]):
                return False
            if area_is_box:
                return True  # every item is a box (scene) or a point (plume): overlapping bounds intersect
            if not prepared.intersects(shapely.geometry.shape(item["geometry"])):
                return False
        return True

    return keep, area


def _sorted(items: list[dict[str, Any]], sortby: Any) -> list[dict[str, Any]]:
    """`sortby` as GET text (`-datetime,id`) or POST [{field, direction}]; stable multi-key sort."""
    if isinstance(sortby, str):
        keys = [(s.lstrip("+-"), "desc" if s.startswith("-") else "asc") for s in sortby.split(",") if s]
    else:
        keys = [(str(s.get("field")), str(s.get("direction", "asc"))) for s in sortby]
    out = list(items)
    for field, direction in reversed(keys):
        name = field.removeprefix("properties.")

        def value(i: dict[str, Any], name: str = name) -> Any:
            if name == "datetime":
                return i["_dt"].timestamp()
            if name in ("id", "collection"):
                return i[name]
            v = i["properties"].get(name)
            return (v is None, v if v is not None else 0)

        out.sort(key=value, reverse=direction == "desc")
    return out
