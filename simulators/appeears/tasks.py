"""Task requests (JSON body + query-string form), their validation and the bundle files of a finished task."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Collection
from typing import Any

from simulators import geotiff
from simulators.appeears.catalog import PRODUCTS

MAX_GRANULES = 400  # granules one date range may give, per product (a long daily range is cut)


def _date(text: Any, recurring: bool) -> tuple[int, int, int | None] | None:
    """(month, day, year) from `MM-DD-YYYY`, or `MM-DD` for recurring ranges; None when malformed."""
    parts = str(text).split("-")
    try:
        if recurring and len(parts) == 2 and len(parts[0]) == len(parts[1]) == 2:
            dt.date(2000, int(parts[0]), int(parts[1]))
            return int(parts[0]), int(parts[1]), None
        if not recurring and len(parts) == 3 and (len(parts[0]), len(parts[1]), len(parts[2])) == (2, 2, 4):
            dt.date(int(parts[2]), int(parts[0]), int(parts[1]))
            return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    return None


def _extent_start(text: str) -> dt.date:
    """`TemporalExtentStart` is free text in the catalog: `2000`, `2000-02-24` or `January 19, 2012`."""
    if len(text) == 4:
        return dt.date(int(text), 1, 1)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return dt.datetime.strptime(text, "%B %d, %Y").date()


def merge_query(body: dict[str, Any], items: list[tuple[str, str]]) -> dict[str, Any]:
    """Applies the documented query-string form over the JSON body (the query string wins)."""
    body = json.loads(json.dumps(body))
    params = body.setdefault("params", {}) if isinstance(body.get("params", {}), dict) else {}
    multi: dict[str, list[str]] = {}
    for key, value in items:
        multi.setdefault(key, []).append(value)
    for key in ("task_name", "task_type"):
        if key in multi:
            body[key] = multi[key][-1]
    date: dict[str, Any] = {}
    for names, target in ((("startDate", "start_date"), "startDate"), (("endDate", "end_date"), "endDate"),
                          (("recurring",), "recurring"), (("yearRange", "year_range"), "yearRange")):
        for name in names:
            if name in multi:
                date[target] = multi[name][-1]
    if date:
        if "recurring" in date:
            date["recurring"] = date["recurring"].lower() == "true"
        if "yearRange" in date:
            date["yearRange"] = [int(y) for y in date["yearRange"].split(",")]
        params["dates"] = [date]
    if "layer" in multi:
        params["layers"] = [dict(zip(("product", "layer"), v.split(",", 1), strict=False)) for v in multi["layer"]]
    shapes = []
    for box in multi.get("bbox", []):
        w, s, e, n = (float(v) for v in box.split(","))
        shapes.append([[w, s], [e, s], [e, n], [w, n], [w, s]])
    for poly in multi.get("polygon", []):
        nums = [float(v) for v in poly.split(",")]
        shapes.append([[nums[i], nums[i + 1]] for i in range(0, len(nums), 2)])
    if shapes:
        params["geo"] = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
            for ring in shapes]}
    if "file_type" in multi:
        params.setdefault("output", {})["format"] = {"type": multi["file_type"][-1]}
    if "projection_name" in multi:
        params.setdefault("output", {})["projection"] = multi["projection_name"][-1]
    if "coordinate" in multi:
        coords = []
        for value in multi["coordinate"]:
            *labels, lat, lon = value.split(",")  # note: lat,lon here, unlike bbox/polygon
            point: dict[str, Any] = {"latitude": float(lat), "longitude": float(lon)}
            point.update(zip(("id", "category"), labels, strict=False))
            coords.append(point)
        params["coordinates"] = coords
    return body


def _ring_ok(ring: Any) -> bool:
    return (isinstance(ring, list) and len(ring) >= 4 and ring[0] == ring[-1]
            and all(isinstance(p, list) and len(p) >= 2 and -180 <= p[0] <= 180 and -90 <= p[1] <= 90
                    for p in ring))


def _geometries(geo: Any) -> list[dict[str, Any]]:
    if not isinstance(geo, dict):
        return []
    if geo.get("type") == "FeatureCollection":
        return [g for f in geo.get("features") or [] for g in _geometries(f)]
    if geo.get("type") == "Feature":
        return _geometries(geo.get("geometry"))
    return [geo] if geo.get("type") in ("Polygon", "MultiPolygon") else []


def validate(body: dict[str, Any], projections: set[str], unavailable: Collection[str] = ()
             ) -> tuple[str | None, str | None]:
    """(why the submit is refused, or None; the error the task will end in, or None)."""
    for key in ("task_name", "task_type", "params"):
        if not body.get(key):
            return f"'{key}' is a required property", None
    if body["task_type"] not in ("area", "point"):
        return f"'{body['task_type']}' is not one of ['area', 'point']", None
    params = body["params"]
    dates, layers = params.get("dates"), params.get("layers")
    if not isinstance(dates, list) or not dates:
        return "'dates' is a required property", None
    if not isinstance(layers, list) or not layers:
        return "'layers' is a required property", None
    earliest: dt.date | None = None
    for d in dates:
        recurring = bool(d.get("recurring"))
        start, end = _date(d.get("startDate"), recurring), _date(d.get("endDate"), recurring)
        if start is None or end is None:
            return (f"Invalid date range {d.get('startDate')!r} to {d.get('endDate')!r}: dates must be MM-DD-YYYY "
                    "(MM-DD for recurring ranges)"), None
        years = d.get("yearRange")
        if recurring and not (isinstance(years, list) and len(years) == 2 and years[0] <= years[1]):
            return "'yearRange' must be [start year, end year] for a recurring date range", None
        first = dt.date(years[0] if recurring else start[2], start[0], start[1])  # type: ignore[index,arg-type]
        if not recurring and first > dt.date(end[2], end[0], end[1]):  # type: ignore[arg-type]
            return f"The start date {d['startDate']} is after the end date {d['endDate']}", None
        earliest = first if earliest is None else min(earliest, first)
    for layer in layers:
        product, name = layer.get("product"), layer.get("layer")
        if product not in PRODUCTS:
            return f"'{product}' is not a valid product", None
        if name not in {n for n, _, _ in PRODUCTS[product][7]}:
            return f"'{name}' is not a valid layer for product '{product}'", None
        if f"{product}/{name}" in unavailable:
            return f"'{name}' of product '{product}' is not available", None
    if body["task_type"] == "area":
        geoms = _geometries(params.get("geo"))
        rings = [r for g in geoms for r in (g["coordinates"] if g["type"] == "Polygon"
                                            else [r for p in g["coordinates"] for r in p])]
        if not geoms or not all(_ring_ok(r) for r in rings):
            return "'geo' must be a GeoJSON polygon feature collection in geographic coordinates", None
        output = params.get("output") or {}
        if (output.get("format") or {}).get("type") not in ("geotiff", "netcdf4"):
            return "'file_type' must be one of ['geotiff', 'netcdf4']", None
        if output.get("projection") not in projections:
            return f"'{output.get('projection')}' is not a supported projection", None
    else:
        coords = params.get("coordinates")
        if not isinstance(coords, list) or not coords:
            return "'coordinates' is a required property", None
        for c in coords:
            lat, lon = c.get("latitude"), c.get("longitude")
            if not all(isinstance(v, int | float) for v in (lat, lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
                return f"Invalid coordinate {c!r}: latitude and longitude must be geographic numbers", None
    for layer in layers:
        start = _extent_start(PRODUCTS[layer["product"]][4])
        if earliest is not None and earliest < start:
            return None, (f"No data found for {layer['product']} in the requested date range: the product's "
                          f"temporal extent starts {start.isoformat()}")
    return None, None


def _period(product: str) -> int:
    """Days between granules: composites every N days of the year, daily products every day."""
    granularity = PRODUCTS[product][3].lower()
    if granularity.split()[0].isdigit():
        return int(granularity.split()[0])
    return {"daily": 1, "iss-dependent": 3}.get(granularity, 0)


def granule_dates(product: str, dates: list[dict[str, Any]]) -> list[dt.date]:
    """The dates of the product's granules inside the requested ranges (a static product: its one granule)."""
    granularity = PRODUCTS[product][3].lower()
    if granularity == "static":
        return [_extent_start(PRODUCTS[product][4])]
    found: set[dt.date] = set()
    for d in dates:
        recurring = bool(d.get("recurring"))
        start, end = _date(d["startDate"], recurring), _date(d["endDate"], recurring)
        assert start is not None and end is not None
        years = range(d["yearRange"][0], d["yearRange"][1] + 1) if recurring else [start[2]]
        for year in years:
            first = dt.date(year, start[0], start[1])  # type: ignore[arg-type]
            last = dt.date(end[2] if not recurring else year, end[0], end[1])  # type: ignore[arg-type]
            if last < first:  # a recurring range over new year
                last = last.replace(year=last.year + 1)
            day = first
            while day <= last and len(found) < MAX_GRANULES:
                if _is_granule(product, day):
                    found.add(day)
                day += dt.timedelta(days=1)
    return sorted(found)


def _is_granule(product: str, day: dt.date) -> bool:
    granularity = PRODUCTS[product][3].lower()
    if granularity == "monthly":
        return day.day == 1
    if granularity in ("yearly", "quinquennial"):
        return day.month == day.day == 1 and (granularity == "yearly" or day.year % 5 == 0)
    period = _period(product)
    return period > 0 and (day.timetuple().tm_yday - 1) % period == 0


def _bounds(geo: Any) -> tuple[float, float, float, float]:
    points = [pt for g in _geometries(geo) for ring in (g["coordinates"] if g["type"] == "Polygon"
                                                        else [r for poly in g["coordinates"] for r in poly])
              for pt in ring]
    lons, lats = [pt[0] for pt in points], [pt[1] for pt in points]
    return min(lons), min(lats), max(lons), max(lats)


def _raster(product: str, layer: str, bounds: tuple[float, float, float, float], rng: Any) -> bytes:
    """A small GeoTIFF of the layer's data type over the task's area (random values in its valid range)."""
    units, dtype = next((u, t) for n, u, t in PRODUCTS[product][7] if n == layer)
    size = 24
    if dtype.startswith("float"):
        values: list[float] = [round(rng.uniform(0, 100), 3) for _ in range(size * size)]
    else:
        high = 255 if dtype == "uint8" or units == "None" else 10000
        values = [rng.randint(0, high) for _ in range(size * size)]
    nodata = -3000 if dtype in ("int16", "int32", "float32") and units != "None" else None
    return geotiff.write(values, size, size, bounds, dtype, nodata)


def bundle_files(body: dict[str, Any], rng: Any) -> list[tuple[dict[str, Any], bytes]]:
    """The files of a finished task, named as AppEEARS names them: one GeoTIFF per layer and granule (area) or one
    CSV per product (point), for the granules inside the requested dates only; (bundle entry, content) pairs."""
    name, params = body["task_name"], body["params"]
    out: list[tuple[str, str, bytes]] = []
    products = sorted({layer["product"] for layer in params["layers"]})
    for product in products:
        layers = [la["layer"] for la in params["layers"] if la["product"] == product]
        days = granule_dates(product, params["dates"])
        if body["task_type"] == "area" and params["output"]["format"]["type"] == "netcdf4":
            out.append((f"{product.replace('.', '_')}_aid0001.nc", "nc",
                        b"\x89HDF\r\n\x1a\n" + rng.randbytes(rng.randint(2000, 6000))))
        elif body["task_type"] == "area" and days:
            folder = f"{product}_{days[0]:%Y%j}_to_{days[-1]:%Y%j}"
            for layer in layers:
                for day in days:
                    out.append((f"{folder}\\{product}_{layer}_doy{day:%Y%j}_aid0001.tif", "tif",
                                _raster(product, layer, _bounds(params["geo"]), rng)))
        elif body["task_type"] == "point":
            columns = [f"{product.replace('.', '_')}_{layer}" for layer in layers]
            rows = [",".join(["ID", "Category", "Latitude", "Longitude", "Date", *columns])]
            for i, c in enumerate(params["coordinates"]):
                for day in days:
                    values = [f"{rng.uniform(0, 10000):.2f}" for _ in layers]
                    rows.append(",".join([str(c.get("id", i + 1)), str(c.get("category", "")), str(c["latitude"]),
                                          str(c["longitude"]), day.isoformat(), *values]))
            out.append((f"{name}-{product.replace('.', '-')}-results.csv", "csv", ("\n".join(rows) + "\n").encode()))
    for product in products:
        xml = f"<?xml version='1.0'?>\n<metadata product='{product}' granules='{rng.randbytes(32).hex()}'/>\n"
        out.append((f"{name}-{product.replace('.', '-')}-metadata.xml", "xml", xml.encode()))
    out.append((f"{name}-request.json", "json", json.dumps(body, indent=2).encode()))
    out.append(("README.txt", "txt", f"AppEEARS {body['task_type']} sample request '{name}'\n".encode()))
    files = []
    for file_name, file_type, content in out:
        meta = {"file_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "file_name": file_name,
                "file_size": len(content), "file_type": file_type, "sha256": hashlib.sha256(content).hexdigest()}
        files.append((meta, content))
    return files
