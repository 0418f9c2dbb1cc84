"""The CarbonMapper REST catalog (`/api/v1/catalog/...`) and token endpoints (`/api/v1/token/...`).

Choices where the doc is silent (each a `create_app(**config)` key; see `simulators.carbonmapper`):
- `default_limit` (10: the parameter table wins over the prose's 500), `max_limit` (1000, from the prose);
- plume `sort=asc|desc` orders by `scene_timestamp`, then plume name; emissions sorts put plumes without an
  emission last; `nearby_items` is always empty and `bbox_count` equals `total_count`;
- sources are clustered once over all published plumes; a filter selects the sources with at least one
  matching plume (names and statistics stay those of the whole cluster); `eps` other than 100 is ignored;
- scenes/annotated lists scenes "eligible for null detection" (doc): cloud cover <= `scene_default_cloud_max`
  unless the caller passes `cloud_cover_pct_min/max` or `not_cloudy` ("for your own threshold"), and always
  only assessed scenes (`scene_require_assessed`, True: the doc names no parameter that lifts it), so a
  plume's scene may be missing there;
- `sources.geojson` feature properties are not in the doc: `source_time_properties` (True) includes
  `timestamp_min/max` and `published_at_min/max` as newer deployments do (observed.md); False omits them, as
  older deployments do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simulators.carbonmapper.common import (
    Invalid,
    RateLimiter,
    boolean,
    enum_list,
    enum_one,
    guarded,
    in_interval,
    integer,
    intersects_bbox,
    interval,
    not_found,
    point_in,
    public,
    rest_bbox,
)
from simulators.carbonmapper.data import GASES, INSTRUMENTS, QUALITIES, SECTORS, Catalog
from simulators.framework import SimulatorState, TokenStore

PLUME_SORTS = ("asc", "desc", "emissions_desc", "emissions_asc", "published_desc", "published_asc")
SCENE_SORTS = ("asc", "desc", "priority")
# 1x1 transparent PNG and a minimal little-endian TIFF header: enough for "the link resolves" checks.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
TIFF = b"II*\x00\x08\x00\x00\x00\x00\x00"


SOURCE_TIME_PROPERTIES = ("timestamp_min", "timestamp_max", "published_at_min", "published_at_max")


def plume_filter(request: Request) -> Callable[[dict[str, Any]], bool]:
    """The documented PlumeFilter (plus `bbox`) as a predicate over simulator plumes."""
    q = request.query_params
    bbox = rest_bbox(request)
    gas = enum_one(request, "plume_gas", GASES)
    sectors = set(enum_list(request, "sectors", SECTORS))
    instruments = set(enum_list(request, "instruments", INSTRUMENTS))
    single = enum_one(request, "instrument", INSTRUMENTS)
    if single:
        instruments.add(single)
    qualities = set(enum_list(request, "qualities", QUALITIES))
    e_min = integer(request, "emission_min")
    e_max = integer(request, "emission_max")
    when = interval(q.get("datetime"), "datetime")
    published = interval(q.get("published_at_datetime"), "published_at_datetime")
    modified = interval(q.get("modified_at"), "modified_at")
    names = set(q.getlist("plume_names"))
    uuids = set(q.getlist("plume_ids"))
    scene_ids = set(q.getlist("scene_ids")) | ({q["scene_id"]} if q.get("scene_id") else set())
    scene_name, search, source_name = q.get("scene_name"), q.get("search"), q.get("source_name")
    phme = boolean(request, "has_phme")
    point = _intersects_point(q.get("intersects"))
    source_of: dict[str, str] = request.app.state.catalog.source_of_plume

    def keep(p: dict[str, Any]) -> bool:
        lon, lat = p["geometry_json"]["coordinates"]
        e = p["emission_auto"]
        return (
            (bbox is None or point_in(bbox, lon, lat))
            and (gas is None or p["gas"] == gas)
            and (not sectors or p["sector"] in sectors)
            and (not instruments or p["instrument"] in instruments)
            and (not qualities or p["plume_quality"] in qualities)
            and (e_min is None or (e is not None and e >= e_min))
            and (e_max is None or (e is not None and e <= e_max))
            and in_interval(p["scene_timestamp"], when)
            and in_interval(p["published_at"], published)
            and in_interval(p["modified"], modified)
            and (not names or p["plume_id"] in names)
            and (not uuids or p["id"] in uuids)
            and (not scene_ids or p["scene_id"] in scene_ids)
            and (scene_name is None or p["plume_id"].rsplit("-", 1)[0] == scene_name)
            and (search is None or search in p["plume_id"])
            and (source_name is None or source_of.get(p["plume_id"]) == source_name)
            and (phme is None or p["_phme"] == phme)
            and (point is None or point_in(p["plume_bounds"], *point))
        )

    return keep


def _intersects_point(raw: str | None) -> tuple[float, float] | None:
    if not raw:
        return None
    try:
        geometry = json.loads(raw)
        if geometry.get("type") != "Point":
            raise ValueError
        lon, lat = (float(c) for c in geometry["coordinates"][:2])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise Invalid("intersects", "intersects must be a GeoJSON Point encoded as a string") from None
    return lon, lat


def _plume_sort(records: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    reverse = sort.endswith("desc")
    if sort.startswith("emissions"):
        with_e = sorted((p for p in records if p["emission_auto"] is not None),
                        key=lambda p: (p["emission_auto"], p["plume_id"]), reverse=reverse)
        return with_e + [p for p in records if p["emission_auto"] is None]
    field = "published_at" if sort.startswith("published") else "scene_timestamp"
    return sorted(records, key=lambda p: (p[field], p["plume_id"]), reverse=reverse)


def routes(state: SimulatorState, limiter: RateLimiter, refresh_tokens: TokenStore) -> list[BaseRoute]:
    cfg = state.config
    optional = guarded(state, limiter)

    def catalog(request: Request) -> Catalog:
        return request.app.state.catalog

    def page_args(request: Request, default: int) -> tuple[int, int]:
        limit = integer(request, "limit", default, minimum=0, maximum=cfg["max_limit"])
        offset = integer(request, "offset", 0, minimum=0)
        return int(limit or 0), int(offset or 0)

    async def token_pair(request: Request) -> Response:
        body = await _json_body(request)
        if body.get("email") != state.credentials.get("email") or body.get("password") != state.credentials.get(
            "password"
        ):
            return JSONResponse({"detail": "No active account found with the given credentials"}, status_code=401)
        access = state.tokens.issue(body["email"], prefix="acc")
        refresh = refresh_tokens.issue(body["email"], prefix="ref")
        return JSONResponse({"refresh": refresh.value, "access": access.value, "groups": "public",
                             "permissions": ["catalog.view_plume"]})

    async def token_refresh(request: Request) -> Response:
        body = await _json_body(request)
        token = refresh_tokens.check(body.get("refresh"))
        if token is None:
            return JSONResponse({"detail": "Token is invalid or expired", "code": "token_not_valid"}, status_code=401)
        refresh_tokens.revoke(token.value)  # rotated: a refresh token works once
        return JSONResponse({"refresh": refresh_tokens.issue(token.subject, prefix="ref").value,
                             "access": state.tokens.issue(token.subject, prefix="acc").value})

    async def token_verify(request: Request) -> Response:
        body = await _json_body(request)
        if state.tokens.check(body.get("token")) is None:
            return JSONResponse({"detail": "Token is invalid or expired", "code": "token_not_valid"}, status_code=401)
        return JSONResponse({})

    @optional
    async def plumes_annotated(request: Request) -> Response:
        keep = plume_filter(request)
        sort = enum_one(request, "sort", PLUME_SORTS) or "desc"
        limit, offset = page_args(request, cfg["default_limit"])
        matched = _plume_sort([p for p in catalog(request).plumes if keep(p)], sort)
        items = [public(p, request) for p in matched[offset:offset + limit]]
        return JSONResponse({"bbox_count": len(matched), "total_count": len(matched), "limit": limit,
                             "offset": offset, "items": items, "nearby_items": []})

    @optional
    async def plume(request: Request) -> Response:
        found = catalog(request).plume_by_key.get(request.path_params["plume_id"])
        return JSONResponse(public(found, request)) if found else not_found("Plume")

    def source_feature(source: dict[str, Any]) -> dict[str, Any]:
        props = public(source["properties"])
        if not cfg["source_time_properties"]:
            props = {k: v for k, v in props.items() if k not in SOURCE_TIME_PROPERTIES}
        return {"type": "Feature", "geometry": source["point"], "properties": props}

    @optional
    async def sources_geojson(request: Request) -> Response:
        keep = plume_filter(request)
        minpoints = integer(request, "minpoints", 1, minimum=1) or 1
        integer(request, "eps")  # validated, then ignored (see the module docstring)
        status = request.query_params.get("status", "not_deleted")
        if status not in ("not_deleted", "published", "publish_ready", "publish_delayed", "valid", "deleted",
                          "hidden", "all"):
            raise Invalid("status", "unknown status")
        chosen = [s for s in catalog(request).sources
                  if s["properties"]["plume_count"] >= minpoints and status != "deleted"
                  and any(keep(p) for p in s["_plumes"])]
        features = [source_feature(s) for s in chosen]
        xs = [f["geometry"]["coordinates"][0] for f in features] or [0.0]
        ys = [f["geometry"]["coordinates"][1] for f in features] or [0.0]
        return JSONResponse({"bbox": [min(xs), min(ys), max(xs), max(ys)], "type": "FeatureCollection",
                             "features": features})

    def source_detail(request: Request, source: dict[str, Any]) -> dict[str, Any]:
        observed = sorted({s["timestamp"].date().isoformat() for s in source["_observed"]})
        detected = sorted({p["scene_timestamp"].date().isoformat() for p in source["_plumes"]})
        scene_names = {p["plume_id"].rsplit("-", 1)[0] for p in source["_plumes"]}
        scenes = [public(s) for s in source["_observed"] if s["name"] in scene_names]
        return {"plumes": [public(p, request) for p in source["_plumes"]], "scenes": scenes,
                "point": {"bbox": source["point"]["coordinates"] * 2, **source["point"]},
                "source_name": source["properties"]["source_name"], "source": public(source["properties"]),
                "observation_dates": observed, "detection_dates": detected}

    @optional
    async def source(request: Request) -> Response:
        found = catalog(request).source_by_name.get(request.path_params["source_name"])
        return JSONResponse(source_detail(request, found)) if found else not_found("Source")

    @optional
    async def source_of_plume(request: Request) -> Response:
        cat = catalog(request)
        name = cat.source_of_plume.get(request.path_params["plume_id"])
        return JSONResponse(source_detail(request, cat.source_by_name[name])) if name else not_found("Source")

    @optional
    async def scenes_annotated(request: Request) -> Response:
        q = request.query_params
        ids, names = set(q.getlist("ids")), set(q.getlist("names"))
        gas = enum_one(request, "plume_gas", GASES)
        instruments = set(enum_list(request, "instruments", INSTRUMENTS))
        sectors = set(enum_list(request, "plume_sectors", SECTORS))
        cc_min, cc_max = integer(request, "cloud_cover_pct_min"), integer(request, "cloud_cover_pct_max")
        not_cloudy = boolean(request, "not_cloudy")
        if cc_min is None and cc_max is None and not_cloudy is None:
            cc_max = cfg["scene_default_cloud_max"]
        if not_cloudy:
            cc_max = min(cc_max if cc_max is not None else 25, 25)
        pc_min, pc_max = integer(request, "published_plume_count_min"), integer(request, "published_plume_count_max")
        e_min, e_max = integer(request, "plume_emission_min"), integer(request, "plume_emission_max")
        bbox = rest_bbox(request)
        when = interval(q.get("datetime"), "datetime")
        sort = enum_one(request, "sort", SCENE_SORTS) or "desc"
        limit, offset = page_args(request, 100)
        if limit < 1:
            raise Invalid("limit", "Input should be greater than or equal to 1")

        def keep(s: dict[str, Any]) -> bool:
            emissions = [e for e in s["_emissions"] if e is not None]
            return (
                (s["_assessed"] or not cfg["scene_require_assessed"])
                and (not ids or s["id"] in ids) and (not names or s["name"] in names)
                and (gas is None or gas in s["_gases"])
                and (not instruments or s["instrument"] in instruments)
                and (not sectors or bool(sectors & set(s["_sectors"])))
                and (cc_min is None or s["_cloud_cover_pct"] >= cc_min)
                and (cc_max is None or s["_cloud_cover_pct"] <= cc_max)
                and (pc_min is None or s["published_plume_count"] >= pc_min)
                and (pc_max is None or s["published_plume_count"] <= pc_max)
                and (e_min is None or any(e >= e_min for e in emissions))
                and (e_max is None or any(e <= e_max for e in emissions))
                and (bbox is None or intersects_bbox(bbox, s["bounds"]))
                and in_interval(s["timestamp"], when)
            )

        matched = [s for s in catalog(request).scenes if keep(s)]
        if sort == "priority":
            matched.sort(key=lambda s: (-s["published_plume_count"], s["name"]))
        else:
            matched.sort(key=lambda s: (s["timestamp"], s["name"]), reverse=sort == "desc")
        return JSONResponse({"items": [public(s) for s in matched[offset:offset + limit]], "count": len(matched)})

    @optional
    async def asset(request: Request) -> Response:
        key: str = request.path_params["key"]
        parts = key.split("/")  # {instrument}/{year}/{plume or scene name}/{file}
        cat = catalog(request)
        if len(parts) != 4 or (parts[2] not in cat.plume_by_key and parts[2] not in cat.scene_by_name):
            return not_found("Asset")
        if key.endswith(".png"):
            return Response(PNG, media_type="image/png")
        if key.endswith(".tif"):
            return Response(TIFF, media_type="image/tiff")
        return not_found("Asset")

    return [
        Route("/api/v1/token/pair", token_pair, methods=["POST"]),
        Route("/api/v1/token/refresh", token_refresh, methods=["POST"]),
        Route("/api/v1/token/verify", token_verify, methods=["POST"]),
        Route("/api/v1/catalog/plumes/annotated", plumes_annotated),
        Route("/api/v1/catalog/plume/{plume_id}", plume),
        Route("/api/v1/catalog/sources.geojson", sources_geojson),
        Route("/api/v1/catalog/source/plume/name/{plume_id}", source_of_plume),
        Route("/api/v1/catalog/source/{source_name}", source),
        Route("/api/v1/catalog/scenes/annotated", scenes_annotated),
        Route("/api/v1/catalog/asset/{key:path}", asset),
    ]


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
