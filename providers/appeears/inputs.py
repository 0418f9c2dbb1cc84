"""`appeears-extract` inputs → an AppEEARS task request (`POST /task` body), checked before anything is sent.

Every problem is a 400 naming the input; products, layers and projections are checked against AppEEARS' own
catalog (`/product`, `/product/{id}`, `/spatial/proj`, revalidated with ETags).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from geofed.errors import InvalidParameter
from geofed.query import check_enum, parse_datetime, parse_geometry, parse_number
from providers.appeears.client import AppeearsClient

TASK_TYPES = ("area", "point")
FILE_TYPES = ("geotiff", "netcdf4")
DEFAULT_PROJECTION = "geographic"
POLYGONS = ("Polygon", "MultiPolygon")  # an area task takes polygons only


def _iso_date(value: Any, parameter: str) -> dt.date:
    """An ISO date (or the date of an RFC 3339 date-time, as written) → a calendar date."""
    if not isinstance(value, str) or len(value.strip()) < 10:
        raise InvalidParameter(f"'{parameter}' must be an ISO date (YYYY-MM-DD), got {value!r}", parameter=parameter)
    return parse_datetime(value, parameter).date()


def dates(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """ISO `start_date`/`end_date` (+ `recurring`, `year_range`) → AppEEARS `MM-DD-YYYY` (or `MM-DD` + yearRange)."""
    if inputs.get("start_date") is None or inputs.get("end_date") is None:
        missing = "start_date" if inputs.get("start_date") is None else "end_date"
        raise InvalidParameter(f"'{missing}' is required", parameter=missing)
    start, end = _iso_date(inputs["start_date"], "start_date"), _iso_date(inputs["end_date"], "end_date")
    recurring = inputs.get("recurring", False)
    if not isinstance(recurring, bool):
        raise InvalidParameter("'recurring' must be true or false", parameter="recurring")
    if not recurring:
        if start > end:
            raise InvalidParameter("'start_date' is after 'end_date'", parameter="start_date")
        return [{"startDate": start.strftime("%m-%d-%Y"), "endDate": end.strftime("%m-%d-%Y")}]
    years = inputs.get("year_range")
    if not (isinstance(years, list) and len(years) == 2 and all(isinstance(y, int) for y in years)
            and 1900 <= years[0] <= years[1] <= 2100):
        raise InvalidParameter("'year_range' must be [first year, last year] for a recurring date range",
                               parameter="year_range")
    return [{"startDate": start.strftime("%m-%d"), "endDate": end.strftime("%m-%d"), "recurring": True,
             "yearRange": years}]


def _geometry(value: Any) -> dict[str, Any]:
    """A GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection → the FeatureCollection AppEEARS takes."""
    if not isinstance(value, dict):
        raise InvalidParameter("'geometry' must be a GeoJSON object", parameter="geometry")
    if value.get("type") == "FeatureCollection":
        features = value.get("features") or []
    elif value.get("type") == "Feature":
        features = [value]
    else:
        features = [{"type": "Feature", "properties": {}, "geometry": value}]
    if not features:
        raise InvalidParameter("'geometry' has no features", parameter="geometry")
    geometries = [parse_geometry(f.get("geometry") if isinstance(f, dict) else None, "geometry", types=POLYGONS)
                  for f in features]
    if any(g is None for g in geometries):
        raise InvalidParameter("'geometry' has a feature without a geometry", parameter="geometry")
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": dict(f.get("properties") or {}), "geometry": g}
        for f, g in zip(features, geometries, strict=True)]}


def points(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InvalidParameter("'points' must be a non-empty list of {latitude, longitude, id?, category?}",
                               parameter="points")
    out = []
    for i, p in enumerate(value):
        if not isinstance(p, dict):
            raise InvalidParameter(f"'points[{i}]' must be an object", parameter="points")
        lat, lon = parse_number(p.get("latitude"), "points.latitude"), parse_number(p.get("longitude"),
                                                                                    "points.longitude")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidParameter(f"'points[{i}]' is outside geographic bounds", parameter="points")
        point: dict[str, Any] = {"latitude": lat, "longitude": lon}
        for key in ("id", "category"):
            if p.get(key) not in (None, ""):
                point[key] = str(p[key])
        out.append(point)
    return out


def _where(products: list[str]) -> str:
    """Where a caller finds the valid layer names of these products."""
    return ("valid layer names are the summaries `appeears:layers` of " +
            ", ".join(f"/stac/collections/appeears:{p}" for p in products) +
            " (AppEEARS: GET /product/{ProductAndVersion})")


async def check_layers(client: AppeearsClient, value: Any) -> list[dict[str, str]]:
    """`layers` against the catalog: unknown or unavailable products and layers (`Available: false` in the product
    listing) → one 400 naming all of them and where the valid ones are listed."""
    if not isinstance(value, list) or not value or not all(isinstance(x, dict) for x in value):
        raise InvalidParameter("'layers' must be a non-empty list of {product, layer}", parameter="layers")
    wanted = [{"product": str(x.get("product") or ""), "layer": str(x.get("layer") or "")} for x in value]
    catalog = {p.get("ProductAndVersion"): p for p in await client.products()}
    unknown = sorted({w["product"] for w in wanted if w["product"] not in catalog
                      or catalog[w["product"]].get("Deleted") or catalog[w["product"]].get("Available") is False})
    if unknown:
        raise InvalidParameter(
            f"'layers': unknown or unavailable AppEEARS product(s): {', '.join(unknown)}; the products are the "
            "collections appeears:{ProductAndVersion} of /stac/collections (AppEEARS: GET /product)",
            parameter="layers")
    products = sorted({w["product"] for w in wanted})
    layers = dict(zip(products, await asyncio.gather(*(client.layers(p) for p in products)), strict=True))
    bad = sorted({f"{w['product']}/{w['layer']}" for w in wanted if w["layer"] not in layers[w["product"]]})
    if bad:
        named = sorted({b.split("/", 1)[0] for b in bad})
        raise InvalidParameter(f"'layers': unknown layer(s): {', '.join(bad)}; {_where(named)}", parameter="layers")
    off = sorted({f"{w['product']}/{w['layer']}" for w in wanted
                  if (layers[w["product"]][w["layer"]] or {}).get("Available") is False})
    if off:
        raise InvalidParameter(
            f"'layers': AppEEARS marks these layers unavailable: {', '.join(off)}; choose others "
            f"({_where(sorted({o.split('/', 1)[0] for o in off}))})", parameter="layers")
    return wanted


async def task_request(client: AppeearsClient, inputs: dict[str, Any], default_name: str) -> dict[str, Any]:
    """The `POST /task` body for these process inputs (400 on any problem, before AppEEARS is called)."""
    task_type = check_enum(inputs.get("task_type"), TASK_TYPES, "task_type")
    name = inputs.get("task_name", default_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidParameter("'task_name' must be a non-empty string (at most 200 characters)",
                               parameter="task_name")
    params: dict[str, Any] = {"dates": dates(inputs)}
    if task_type == "area":
        if "points" in inputs:
            raise InvalidParameter("'points' is for point tasks; an area task takes 'geometry'", parameter="points")
        if "geometry" not in inputs:
            raise InvalidParameter("'geometry' is required for an area task", parameter="geometry")
        params["geo"] = _geometry(inputs["geometry"])
        file_type = check_enum(inputs.get("file_type", "geotiff"), FILE_TYPES, "file_type")
        projection = inputs.get("projection", DEFAULT_PROJECTION)
        names = [p.get("Name") for p in await client.projections()]
        if projection not in names:
            raise InvalidParameter(f"'projection' must be one of {', '.join(map(str, names))}; got {projection!r}",
                                   parameter="projection")
        params["output"] = {"format": {"type": file_type}, "projection": projection}
    else:
        if "geometry" in inputs:
            raise InvalidParameter("'geometry' is for area tasks; a point task takes 'points'", parameter="geometry")
        for key in ("file_type", "projection"):
            if key in inputs:
                raise InvalidParameter(f"'{key}' applies to area tasks only", parameter=key)
        params["coordinates"] = points(inputs.get("points"))
    params["layers"] = await check_layers(client, inputs.get("layers"))
    return {"task_type": task_type, "task_name": name.strip(), "params": params}
