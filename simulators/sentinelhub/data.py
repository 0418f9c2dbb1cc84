"""Seeded Sentinel Hub catalog data: the three collections and their items on a UTM-33 tile grid.

A grid of 4 x 3 UTM-33 tiles (110 km, 9.8 km overlap, about 11°E–16.5°E, 44°N–47°N) with Sentinel-2 L1C/L2A
acquisitions every 5 days (tiles on a swath edge get trapezoid footprints) and Sentinel-1 GRD every 6 days
(alternating orbit direction) over 2023–2024, with seasonal cloud cover (cloudier winters).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import shapely
from pyproj import Transformer

from simulators.framework import SimulatorState

CRS84 = "urn:ogc:def:crs:OGC::CRS84"
UTC = dt.UTC
YEARS = (2023, 2024)
TILE_COLUMNS, TILE_ROWS = "TUVW", "KLM"  # 100 km MGRS squares of zone 33T; x0 = 200 km + 100 km * column
S2_BANDS = [("B01", "coastal", 0.4427, 0.021), ("B02", "blue", 0.4924, 0.066), ("B03", "green", 0.5598, 0.036),
            ("B04", "red", 0.6646, 0.031), ("B05", None, 0.7041, 0.015), ("B06", None, 0.7405, 0.015),
            ("B07", None, 0.7828, 0.02), ("B08", "nir", 0.8328, 0.106), ("B8A", "nir08", 0.8647, 0.021),
            ("B09", "nir09", 0.9451, 0.02), ("B11", "swir16", 1.6137, 0.091), ("B12", "swir22", 2.2024, 0.175)]


def _collection(cid: str, title: str, description: str, start: str, summaries: dict[str, Any]) -> dict[str, Any]:
    return {
        "stac_version": "1.0.0", "type": "Collection", "id": cid, "title": title, "description": description,
        "sci:citation": "Modified Copernicus Sentinel data [Year]/Sentinel Hub", "license": "proprietary",
        "providers": [{"name": "Sentinel Hub", "roles": ["processor", "host"], "url": "https://www.sentinel-hub.com"}],
        "extent": {"spatial": {"bbox": [[-180, -56, 180, 83]]}, "temporal": {"interval": [[start, None]]}},
        "summaries": summaries,
    }


def _s2_summaries() -> dict[str, Any]:
    bands = [{"name": n, **({"common_name": c} if c else {}), "center_wavelength": w, "full_width_half_max": f}
             for n, c, w, f in S2_BANDS]
    return {"platform": ["sentinel-2a", "sentinel-2b"], "instrument": ["msi"], "constellation": ["sentinel-2"],
            "gsd": [10], "eo:cloud_cover": {"minimum": 0, "maximum": 100}, "eo:bands": bands}


COLLECTIONS: dict[str, dict[str, Any]] = {
    "sentinel-2-l1c": _collection("sentinel-2-l1c", "Sentinel 2 L1C", "Sentinel 2 imagery processed to level 1C",
                                  "2015-11-01T00:00:00Z", _s2_summaries()),
    "sentinel-1-grd": _collection("sentinel-1-grd", "Sentinel 1 GRD", "Sentinel 1 Ground Range Detected Imagery",
                                  "2014-10-03T00:00:00Z", {
                                      "platform": ["sentinel-1a", "sentinel-1b"], "instrument": ["c-sar"],
                                      "constellation": ["sentinel-1"], "gsd": [10],
                                      "sat:orbit_state": ["ascending", "descending"],
                                      "sar:instrument_mode": ["IW", "EW", "SM"], "sar:frequency_band": ["C"],
                                      "sar:polarizations": ["VV", "VH", "HH", "HV"],
                                      "s1:resolution": ["HIGH", "MEDIUM"]}),
    "sentinel-2-l2a": _collection("sentinel-2-l2a", "Sentinel 2 L2A", "Sentinel 2 imagery processed to level 2A",
                                  "2016-11-01T00:00:00Z", _s2_summaries()),
}
QUERYABLES: dict[str, dict[str, Any]] = {
    "sentinel-2-l1c": {"eo:cloud_cover": {"description": "Cloud Cover", "type": "number", "minimum": 0,
                                          "maximum": 100}},
    "sentinel-1-grd": {"sat:orbit_state": {"description": "Orbit state", "type": "string",
                                           "enum": ["ascending", "descending"]}},
}
QUERYABLES["sentinel-2-l2a"] = QUERYABLES["sentinel-2-l1c"]


# ----------------------------------------------------------------- seeded catalog data
@dataclass
class Record:
    item: dict[str, Any]  # the upstream item without links
    when: dt.datetime
    geometry: Any  # shapely, WGS84
    cloud: float | None


class Catalog:
    """Every item of the three collections, sorted by (datetime, id). Built once per app (~0.3 s)."""

    def __init__(self, state: SimulatorState) -> None:
        self.records: dict[str, list[Record]] = {c: [] for c in COLLECTIONS}
        to_wgs84 = Transformer.from_crs(32633, 4326, always_xy=True)
        for col, letter in enumerate(TILE_COLUMNS):
            for row, row_letter in enumerate(TILE_ROWS):
                self._tile(state, to_wgs84, col, row, f"33T{letter}{row_letter}")
        for records in self.records.values():
            records.sort(key=lambda r: (r.when, r.item["id"]))
        self.by_id = {(c, r.item["id"]): r for c, recs in self.records.items() for r in recs}

    def _tile(self, state: SimulatorState, to_wgs84: Transformer, col: int, row: int, tile: str) -> None:
        x0, y0 = 200_000 + col * 100_000, 4_890_240 + row * 100_000
        x1, y1 = x0 + 109_800, y0 + 109_800
        partial = col in (1, 3)  # these tiles lie on the edge of their orbit's swath: the footprint is a trapezoid
        utm = [(x0, y1), (x0, y0), (x0 + (0.48 if partial else 1) * 109_800, y0),
               (x0 + (0.79 if partial else 1) * 109_800, y1), (x0, y1)]
        lonlat = [to_wgs84.transform(x, y) for x, y in utm]
        geom = shapely.Polygon(lonlat)
        geometry = {"type": "MultiPolygon", "crs": {"type": "name", "properties": {"name": CRS84}},
                    "coordinates": [[[list(p) for p in lonlat]]]}
        proj = {"proj:epsg": 32633, "proj:bbox": [x0, y0, x1, y1],
                "proj:geometry": {"type": "MultiPolygon", "coordinates": [[[list(p) for p in utm]]],
                                  "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}}}
        rng = state.rng(f"tile:{tile}")
        orbit = 22 if col < 2 else 122
        day = dt.datetime(YEARS[0], 1, 1, 10, 0, 21, tzinfo=UTC) + dt.timedelta(days=col % 5, seconds=row * 4)
        end = dt.datetime(YEARS[-1] + 1, 1, 1, tzinfo=UTC)
        n = 0
        while day < end:
            winter = math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365) * 0.5 + 0.5  # 1 in January
            cloud = round(100 * rng.betavariate(0.3 + 0.35 * winter, 0.95 - 0.25 * winter), 2)
            sat = "sentinel-2a" if n % 2 == 0 else "sentinel-2b"
            baseline = "N0509" if day.year == 2023 else "N0510"
            stamp = day.strftime("%Y%m%dT%H%M%S")
            made = (day + dt.timedelta(hours=2, minutes=rng.randint(0, 50))).strftime("%Y%m%dT%H%M%S")
            for level, cid in (("1C", "sentinel-2-l1c"), ("2A", "sentinel-2-l2a")):
                item_id = f"S2{sat[-1].upper()}_MSIL{level}_{stamp}_{baseline}_R{orbit:03d}_T{tile}_{made}"
                props = {"datetime": day.strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": sat, "instruments": ["msi"],
                         "constellation": "sentinel-2", "gsd": 10, "eo:cloud_cover": cloud, **proj}
                href = f"s3://sentinel-s2-l{level[0]}{level[1].lower()}/tiles/33/T/{tile[3:]}/" \
                       f"{day.year}/{day.month}/{day.day}/0/"
                self._add(cid, item_id, day, geom, geometry, props, href, cloud)
            day += dt.timedelta(days=5)
            n += 1
        day = dt.datetime(YEARS[0], 1, 1, 5, 15, 12, tzinfo=UTC) + dt.timedelta(days=(col + row) % 6)
        n = 0
        while day < end:
            state_ = "descending" if n % 2 == 0 else "ascending"
            when = day if state_ == "descending" else day + dt.timedelta(hours=11, minutes=40)
            absolute = 46_412 + (when - dt.datetime(2023, 1, 1, tzinfo=UTC)).days * 175 // 12
            stamp, stop = when.strftime("%Y%m%dT%H%M%S"), (when + dt.timedelta(seconds=25)).strftime("%Y%m%dT%H%M%S")
            item_id = f"S1A_IW_GRDH_1SDV_{stamp}_{stop}_{absolute:06d}_{rng.randrange(16**6):06X}_" \
                      f"{rng.randrange(16**4):04X}"
            props = {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": "sentinel-1a",
                     "instruments": ["c-sar"], "constellation": "sentinel-1", "gsd": 10,
                     "sat:orbit_state": state_, "sat:absolute_orbit": absolute,
                     "sat:relative_orbit": (absolute - 73) % 175 + 1, "sar:instrument_mode": "IW",
                     "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"], "sar:product_type": "GRD",
                     "s1:resolution": "HIGH", "s1:timeliness": "Fast24h", **proj}
            href = f"s3://sentinel-s1-l1c/GRD/{when.year}/{when.month}/{when.day}/IW/DV/{item_id}/"
            self._add("sentinel-1-grd", item_id, when, geom, geometry, props, href, None)
            day += dt.timedelta(days=6)
            n += 1

    def _add(self, cid: str, item_id: str, when: dt.datetime, geom: Any, geometry: dict[str, Any],
             props: dict[str, Any], href: str, cloud: float | None) -> None:
        minx, miny, maxx, maxy = geom.bounds
        item = {"stac_version": "1.0.0", "id": item_id, "type": "Feature", "geometry": geometry,
                "bbox": [minx, miny, maxx, maxy], "properties": props,
                "assets": {"data": {"href": href, "title": "s3", "type": "inode/directory"}}, "collection": cid}
        self.records[cid].append(Record(item, when, geom, cloud))


    def add_scene(self, spec: dict[str, Any]) -> Record:
        """A scene acquired `spec["datetime"]` (default: now) over `spec["bbox"]` [w, s, e, n], in
        `spec["collection"]` (default sentinel-2-l2a), listed from now on (`POST /_sim/scenes`: demos and alert
        tests). Optional: `id`, `cloud_cover` (Sentinel-2, default 10)."""
        cid = str(spec.get("collection") or "sentinel-2-l2a")
        if cid not in self.records:
            raise BadRequest(f"Collection '{cid}' not found", status=404)
        try:
            w, s, e, n = (float(v) for v in spec["bbox"])
            when = parse_time(str(spec["datetime"]), "datetime") if spec.get("datetime") else \
                dt.datetime.now(UTC).replace(microsecond=0)
        except (KeyError, TypeError, ValueError):
            raise BadRequest("a scene needs 'bbox': [west, south, east, north]") from None
        geom = shapely.box(w, s, e, n)
        ring = [list(p) for p in geom.exterior.coords]
        geometry = {"type": "MultiPolygon", "crs": {"type": "name", "properties": {"name": CRS84}},
                    "coordinates": [[ring]]}
        s2 = cid.startswith("sentinel-2")
        cloud = float(spec.get("cloud_cover", 10)) if s2 else None
        item_id = str(spec.get("id") or f"{'S2A_MSIL2A' if s2 else 'S1A_IW_GRDH_1SDV'}_{when:%Y%m%dT%H%M%S}_"
                                         f"SIM{len(self.by_id):06d}")
        props = {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": "sentinel-2a" if s2 else "sentinel-1a",
                 "instruments": ["msi" if s2 else "c-sar"], "constellation": "sentinel-2" if s2 else "sentinel-1",
                 "gsd": 10, **({"eo:cloud_cover": cloud} if s2 else {"sat:orbit_state": "descending"})}
        self._add(cid, item_id, when, geom, geometry, props, f"s3://simulated/{item_id}/", cloud)
        record = self.records[cid].pop()
        keys = [(r.when, r.item["id"]) for r in self.records[cid]]
        self.records[cid].insert(bisect.bisect(keys, (when, item_id)), record)
        self.by_id[(cid, item_id)] = record
        return record


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_time(text: str, what: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise BadRequest(f"Invalid {what}: '{text}' is not an RFC 3339 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features", "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#fields", "https://api.stacspec.org/v1.0.0/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text", "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
