"""The simulated Statistical API: deterministic, seasonal index statistics for any (multi)polygon."""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import math
import re
from statistics import NormalDist
from typing import Any

import isodate
import shapely
from shapely.geometry import box, shape

from simulators.framework import SimulatorState
from simulators.sentinelhub.data import COLLECTIONS, UTC, BadRequest, Catalog, parse_time


def index_kind(evalscript: str) -> str:
    """The index an evalscript computes, from the bands it reads (the simulator cannot run JavaScript)."""
    bands = set(re.findall(r"\b(B0[1-9]|B1[0-2]|B8A|VV|VH)\b", evalscript))
    for kind, needs in (("NBR", {"B08", "B12"}), ("NDWI", {"B03", "B08"}), ("NDVI", {"B04", "B08"}),
                        ("SAR", {"VV"}), ("SAR", {"VH"})):
        if needs <= bands:
            return kind
    return "OTHER:" + hashlib.sha1(evalscript.encode()).hexdigest()[:8]


def script_outputs(evalscript: str) -> list[tuple[str, int]]:
    found = re.findall(r"id\s*:\s*[\"']([^\"']+)[\"']\s*,\s*bands\s*:\s*(\d+)", evalscript)
    outputs = [(name, int(n)) for name, n in found if name != "dataMask"]
    return outputs or [("default", 1)]


def compute_statistics(cat: Catalog, state: SimulatorState, settings: dict[str, Any],
                       body: dict[str, Any], served: list[str] | None = None) -> dict[str, Any]:
    """The Statistical API's answer; `served` = the collections of the deployment asked (default: all)."""
    inp, agg = body.get("input") or {}, body.get("aggregation") or {}
    bounds = inp.get("bounds") or {}
    if bounds.get("geometry"):
        try:
            geom = shape(bounds["geometry"])
        except Exception:
            raise BadRequest("Invalid input.bounds.geometry: not a GeoJSON geometry") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise BadRequest(f"Invalid input.bounds.geometry: {geom.geom_type} is not a (multi)polygon")
    elif bounds.get("bbox"):
        geom = box(*bounds["bbox"][:4])
    else:
        raise BadRequest("input.bounds must have a geometry or a bbox")
    data = (inp.get("data") or [{}])[0]
    cid = data.get("type")
    if cid not in (COLLECTIONS if served is None else served):
        raise BadRequest(f"Invalid data collection type: '{cid}'" if cid not in COLLECTIONS else
                         f"Data collection '{cid}' is not available at this endpoint; use the endpoint of its "
                         "deployment")
    evalscript = agg.get("evalscript")
    if not isinstance(evalscript, str) or "function setup" not in evalscript or "evaluatePixel" not in evalscript:
        raise BadRequest("Failed to evaluate script! evalscript must define setup() and evaluatePixel()")
    time_range = agg.get("timeRange") or {}
    start = parse_time(str(time_range.get("from", "")), "aggregation.timeRange.from")
    end = parse_time(str(time_range.get("to", "")), "aggregation.timeRange.to")
    if start >= end:
        raise BadRequest("Invalid aggregation.timeRange: 'from' must be before 'to'")
    interval = agg.get("aggregationInterval") or {}
    try:
        step = isodate.parse_duration(str(interval.get("of")))
    except (isodate.ISO8601Error, ValueError):
        raise BadRequest(f"Invalid aggregationInterval.of: '{interval.get('of')}' is not an ISO 8601 duration") \
            from None
    behaviour = interval.get("lastIntervalBehavior", "SKIP")
    minx, miny, maxx, maxy = geom.bounds
    if agg.get("resx") and agg.get("resy"):
        resx, resy = float(agg["resx"]), float(agg["resy"])
    elif agg.get("width") and agg.get("height"):
        resx, resy = (maxx - minx) / int(agg["width"]), (maxy - miny) / int(agg["height"])
    else:
        raise BadRequest("aggregation needs resx/resy or width/height")
    limit = settings["max_image_pixels"]
    if (maxx - minx) / resx > limit or (maxy - miny) / resy > limit:
        raise BadRequest(f"The request image width or height exceeds the maximum of {limit} pixels; "
                         "use a coarser resolution")
    max_cc = float((data.get("dataFilter") or {}).get("maxCloudCoverage", 100))
    candidates = [r for r in cat.records[cid] if r.geometry.intersects(geom)
                  and (r.cloud is None or r.cloud <= max_cc)]
    times = [r.when for r in candidates]
    kind, outputs = index_kind(evalscript), script_outputs(evalscript)
    geom_key = hashlib.sha1(shapely.set_precision(geom, 1e-6).wkb).hexdigest()[:16]
    site = state.rng(f"site:{geom_key}:{kind}")
    base, amp = 0.25 + 0.25 * site.random(), 0.15 + 0.2 * site.random()
    samples = max(1, round(geom.area / (resx * resy)))
    wanted = {name: (spec.get("statistics") or {}) for name, spec in (body.get("calculations") or {}).items()}
    series = []
    lo = start
    while lo < end:
        hi = lo + step
        if hi > end:
            if behaviour == "SKIP":
                break
            hi = end if behaviour == "SHORTEN" else hi
        acquired = candidates[bisect.bisect_left(times, lo):bisect.bisect_left(times, hi)]
        if acquired:
            covered = shapely.union_all([r.geometry for r in acquired]).intersection(geom).area / geom.area
            cloud = min((r.cloud for r in acquired if r.cloud is not None), default=0.0)
            doy = lo.timetuple().tm_yday
            out = {}
            for position, (name, nbands) in enumerate(outputs):
                bands = {}
                for b in range(nbands):
                    rng = state.rng(f"stat:{cid}:{kind}:{geom_key}:{lo.isoformat()}:{position}:{b}")
                    stats = band_stats(kind, base, amp, doy, cloud, rng, samples, covered)
                    pct = ((wanted.get(name) or wanted.get("default") or {}).get(f"B{b}") or {}).get("percentiles")
                    if pct:
                        stats["percentiles"] = {
                            f"{k}.0": stats["mean"] + stats["stDev"] * NormalDist().inv_cdf(min(max(k, 1), 99) / 100)
                            for k in pct.get("k", [])}
                    bands[f"B{b}"] = {"stats": stats}
                out[name] = {"bands": bands}
            series.append({"interval": {"from": _iso(lo), "to": _iso(hi)}, "outputs": out})
        lo = hi
    return {"data": series, "status": "OK"}


def band_stats(kind: str, base: float, amp: float, doy: int, cloud: float, rng: Any, samples: int,
               covered: float) -> dict[str, Any]:
    season = math.sin(2 * math.pi * (doy - 105) / 365)
    ndvi = (base + amp * season) * (1 - 0.6 * cloud / 100) + rng.gauss(0, 0.02)
    if kind == "NDVI":
        mean, lo, hi = ndvi, -1.0, 1.0
    elif kind == "NDWI":
        mean, lo, hi = -0.8 * ndvi + 0.05 + rng.gauss(0, 0.01), -1.0, 1.0
    elif kind == "NBR":
        mean, lo, hi = 0.85 * ndvi - 0.03 + rng.gauss(0, 0.01), -1.0, 1.0
    elif kind == "SAR":
        mean, lo, hi = 0.03 + 0.02 * season + rng.gauss(0, 0.003), 0.0, 1.0  # linear backscatter (VV)
    else:
        mean, lo, hi = 0.1 + 0.1 * base + rng.gauss(0, 0.01), 0.0, 1.0
    sd = abs(mean) * 0.1 + 0.03 + 0.05 * rng.random()
    no_data = round(samples * (1 - min(1.0, covered)))
    return {"min": max(lo, mean - (2.2 + rng.random()) * sd), "max": min(hi, mean + (2.2 + rng.random()) * sd),
            "mean": mean, "stDev": sd, "sampleCount": samples, "noDataCount": no_data}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
