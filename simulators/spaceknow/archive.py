"""The SpaceKnow simulator's data: datasets, a deterministic scene archive over several regions, Kraken map
types, and the geometry, tile, PNG and JWT helpers its routes use."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import secrets
import struct
import time
import zlib
from typing import Any

import shapely.geometry
from pyproj import Geod
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from simulators import geotiff
from simulators.framework import SimulatorState

AUTH0_CLIENT_ID = "hmWJcfhRouDOaJK2L8asREMlMrv3jFE1"  # the fixed value the doc prints
GEOD = Geod(ellps="WGS84")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


REGIONS: dict[str, tuple[float, float, float, float]] = {
    "permian-basin": (-104.5, 30.8, -101.5, 33.2),
    "turkmenistan-west": (53.0, 38.2, 56.0, 40.2),
    "four-corners": (-109.2, 36.0, -107.2, 37.5),
    "upper-silesia": (18.2, 49.7, 19.6, 50.5),
    "hassi-messaoud": (5.5, 31.2, 6.8, 32.2),
}

# provider, dataset, name, type, attribution, satellites, bands (names, gsd), footprint km (w, h),
# scenes per region, credits per km², separate search (global), off-nadir range
DATASETS: list[tuple[Any, ...]] = [
    ("pl", "PSScene", "PlanetScope Scene", "optical", "Planet", ["PSB.SD", "PS2.SD"],
     [("blue", 3.0), ("green", 3.0), ("red", 3.0), ("nir", 3.0)], (24, 11), 40, 0.02, False, (0, 5)),
    ("pl", "SkySatCollect", "SkySat Collect", "optical", "Planet", ["SS01", "SS07", "SS12"],
     [("pan", 0.5), ("blue", 0.5), ("green", 0.5), ("red", 0.5), ("nir", 0.5)], (6, 20), 12, 0.45, False, (5, 30)),
    ("ab", "pleiades", "Pleiades", "optical", "Airbus", ["PHR1A", "PHR1B"],
     [("red", 0.5), ("green", 0.5), ("blue", 0.5), ("nir", 2.0)], (20, 20), 15, 0.35, False, (0, 30)),
    ("ab", "spot", "SPOT 6/7", "optical", "Airbus", ["SPOT6", "SPOT7"],
     [("red", 1.5), ("green", 1.5), ("blue", 1.5), ("nir", 6.0)], (60, 60), 10, 0.06, False, (0, 25)),
    ("ee", "COPERNICUS/S2_HARMONIZED", "Copernicus Sentinel-2 Harmonized", "optical", "Copernicus",
     ["Sentinel-2A", "Sentinel-2B"], [("B2", 10.0), ("B3", 10.0), ("B4", 10.0), ("B8", 10.0), ("B11", 20.0)],
     (110, 110), 30, 0.001, False, (0, 6)),
    ("ee", "COPERNICUS/S1_GRD", "Copernicus Sentinel-1 GRD", "sar-grd", "Copernicus", ["Sentinel-1A"],
     [("VV", 10.0), ("VH", 10.0)], (250, 170), 20, 0.001, False, (29, 46)),
    ("ee", "COPERNICUS/S5P/OFFL/L3_CH4", "Sentinel-5P CH4 (offline L3)", "optical", "Copernicus", ["Sentinel-5P"],
     [("CH4_column_volume_mixing_ratio_dry_air", 7000.0)], (2600, 2600), 25, 0.0001, True, (0, 0)),
]
# Kraken map types: credit multiplier, input scenes per map (1 = single-input, 2 = pairwise), description and grid
# files by format. aircraft and ships are the doc's list-map-types samples verbatim; the others follow their shape.
MAP_TYPES: dict[str, tuple[float, int, str, dict[str, list[str]]]] = {
    "imagery": (1.0, 1, "Imagery of the scene", {"png": ["truecolor.png"], "ski": ["imagery.ski"],
                                                 "json": ["metadata.json"]}),
    "aircraft": (2.0, 1, "Aircraft detection algorithm", {
        "geojson": ["detections.geojson"], "geotiff": ["analysis.geotiff", "visualization.geotiff"],
        "json": ["metadata.json"], "png": ["segmentation.png", "transport.png", "fighter.png", "rotary-wing.png"],
        "ski": ["segmentation.ski"]}),
    "ships": (2.0, 1, "Ship detection algorithm", {
        "geojson": ["detections.geojson"], "geotiff": ["analysis.geotiff", "visualization.geotiff"],
        "json": ["metadata.json"], "png": ["segmentation.png", "ships.png"], "ski": ["segmentation.ski"]}),
    "cars": (2.0, 1, "Car detection algorithm", {
        "geojson": ["detections.geojson"], "json": ["metadata.json"], "png": ["segmentation.png", "cars.png"]}),
    "wrunc": (1.5, 1, "Water, roads, urban, nature and clouds segmentation", {
        "geotiff": ["analysis.geotiff"], "json": ["metadata.json"], "png": ["segmentation.png"]}),
    "change": (3.0, 2, "Change detection between two scenes", {
        "geojson": ["detections.geojson"], "json": ["metadata.json"], "png": ["change.png"]}),
}


def map_types_catalog() -> list[dict[str, Any]]:
    """The list-map-types answer, shaped as the doc's sample (every map type runs on every simulated dataset)."""
    datasets: dict[str, list[Any]] = {}
    for prov, name, *_ in DATASETS:
        datasets.setdefault(prov, []).append(
            [name, {"isGlobal": prov == "ee", "marginPx": 80, "minSizePx": 0, "version": "sim-1"}])
    return [{"availableDatasets": datasets, "description": description, "gridFiles": files, "mapType": kind,
             "maxMpix": 14400, "supportsUserThreshold": kind == "wrunc"}
            for kind, (_rate, _inputs, description, files) in MAP_TYPES.items()]


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
ALNUM = URLSAFE[:62]



def datasets_catalog() -> list[dict[str, Any]]:
    out = []
    for prov, name, title, kind, attribution, _sats, bands, _size, _n, _rate, separate, _nadir in DATASETS:
        gsds = [g for _, g in bands]
        entry: dict[str, Any] = {
            "attribution": attribution, "changeGroup": f"{prov}_{name}",
            "clip": "required" if prov in ("ab", "pl") else "disallowed",
            "dataset": name, "datasetName": title, "datasetType": kind, "downloadable": prov == "ee",
            "exportable": prov != "ee", "maxMbrSide": 40_000_000 if separate else 400_000, "provider": prov,
            "providerName": {"pl": "Planet", "ab": "Airbus", "ee": "Earth Engine"}[prov],
            "requiresSeparateSearch": separate, "resolution": [min(gsds), max(gsds)], "thumbnail": kind == "optical",
        }
        if kind == "optical" and not separate:
            entry["visualizationBands"] = ["red", "green", "blue"]
        out.append(entry)
    return out


def footprint(cx: float, cy: float, w_km: float, h_km: float, angle: float) -> BaseGeometry:
    dx = w_km / 2 / (111.32 * math.cos(math.radians(cy)))
    dy = h_km / 2 / 110.57
    box = shapely.geometry.box(cx - dx, max(-89.0, cy - dy), cx + dx, min(89.0, cy + dy))
    return affinity.rotate(box, angle, origin=(cx, cy))


def utm_epsg(lon: float, lat: float) -> int:
    return (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1


def generate_archive(state: SimulatorState) -> list[dict[str, Any]]:
    scenes: list[dict[str, Any]] = []
    start = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    for region, (w, s, e, n) in REGIONS.items():
        for prov, name, _t, kind, _a, sats, bands, (fw, fh), count, _r, separate, (nmin, nmax) in DATASETS:
            rng = state.rng(f"{region}:{prov}:{name}")
            for i in range(count):
                cx, cy = rng.uniform(w, e), rng.uniform(s, n)
                if separate:  # a CH4 L3 grid tile around the region
                    cx, cy = (w + e) / 2, (s + n) / 2
                foot = footprint(cx, cy, fw * rng.uniform(0.9, 1.1), fh * rng.uniform(0.9, 1.1),
                                  0.0 if separate else rng.uniform(-12, 12))
                day = start + dt.timedelta(days=rng.uniform(0, 730))
                utc_hour = (10.5 if kind == "optical" else 18.0) - cx / 15.0 + rng.uniform(-0.5, 0.5)
                when = day.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(hours=utc_hour % 24)
                doy = when.timetuple().tm_yday
                declination = 23.44 * math.sin(2 * math.pi * (doy - 81) / 365)
                gsd_band = [{
                    "bitDepth": 8 if kind == "optical" and prov == "ab" else 16, "gsd": gsd, "names": [band],
                    "pixelSizeX": gsd / 111320.0, "pixelSizeY": -gsd / 110570.0,
                } for band, gsd in bands]
                scenes.append({
                    "sceneId": "".join(rng.choice(URLSAFE) for _ in range(rng.randint(34, 60))),
                    "provider": prov, "dataset": name, "satellite": rng.choice(sats),
                    "datetime": when.strftime(TIME_FORMAT),
                    "footprint": shapely.geometry.mapping(foot),
                    "crsEpsg": 4326 if kind != "optical" or separate else utm_epsg(cx, cy),
                    "bands": gsd_band,
                    "offNadir": round(rng.uniform(nmin, nmax), 4),
                    "satelliteAzimuth": round(rng.uniform(95, 105) if nmax < 10 else rng.uniform(0, 360), 3),
                    "sunAzimuth": round(rng.uniform(130, 165) if cy >= 0 else rng.uniform(15, 50), 4),
                    "sunElevation": round(max(5.0, 90 - abs(cy - declination) - rng.uniform(5, 15)), 3),
                    "foreignId": f"{when:%Y%m%d_%H%M%S}_{i:03d}",
                    "minArea": round(rng.uniform(0.5, 25), 1),
                    "clippedImagery": prov in ("ab", "pl"),
                    "downloadable": prov == "ee",
                    "_region": region,
                })
    scenes.sort(key=lambda sc: (sc["datetime"], sc["sceneId"]), reverse=True)
    return scenes


def index(cache: dict[str, Any], scenes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds `scenes` to the simulator's archive (`cache`: scenes newest first, by_id, shapes); the archive."""
    cache.setdefault("scenes", []).extend(scenes)
    cache["scenes"].sort(key=lambda sc: (sc["datetime"], sc["sceneId"]), reverse=True)
    for sc in scenes:
        cache.setdefault("by_id", {})[sc["sceneId"]] = sc
        cache.setdefault("shapes", {})[sc["sceneId"]] = shapely.geometry.shape(sc["footprint"])
    return cache["scenes"]


def add_scene(cache: dict[str, Any], body: bytes) -> tuple[dict[str, Any], int]:
    """`POST /_sim/scenes`: the answer (the new scene, 201; or a 400 error) — see `new_scene`."""
    try:
        scene = new_scene(json.loads(body or b"null"))
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": "INVALID-SCENE", "message": f"a scene needs 'bbox': [w, s, e, n] ({exc})"}, 400
    index(cache, [scene])
    return public(scene), 201


def new_scene(spec: Any) -> dict[str, Any]:
    """`POST /_sim/scenes {"bbox": [w, s, e, n], "provider"?, "dataset"?, "datetime"?, "sceneId"?}`: a scene
    acquired `datetime` ('YYYY-MM-DD HH:MM:SS', default now), searchable from now on (demos and alert tests).
    Raises ValueError on a malformed spec."""
    if not isinstance(spec, dict):
        raise ValueError("a JSON object is required")
    w, s, e, n = (float(v) for v in spec["bbox"])
    prov, name = str(spec.get("provider") or "pl"), str(spec.get("dataset") or "PSScene")
    row = next((r for r in DATASETS if r[0] == prov and r[1] == name), None)
    if row is None:
        raise ValueError(f"unknown dataset {prov}/{name}")
    when = dt.datetime.strptime(spec["datetime"], TIME_FORMAT) if spec.get("datetime") else \
        dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    gsd_band = [{"bitDepth": 16, "gsd": gsd, "names": [band], "pixelSizeX": gsd / 111320.0,
                 "pixelSizeY": -gsd / 110570.0} for band, gsd in row[6]]
    return {"sceneId": str(spec.get("sceneId") or secrets.token_urlsafe(33)), "provider": prov, "dataset": name,
            "satellite": row[5][0], "datetime": when.strftime(TIME_FORMAT),
            "footprint": shapely.geometry.mapping(shapely.geometry.box(w, s, e, n)),
            "crsEpsg": utm_epsg((w + e) / 2, (s + n) / 2), "bands": gsd_band, "offNadir": 5.0,
            "satelliteAzimuth": 100.0, "sunAzimuth": 150.0, "sunElevation": 45.0,
            "foreignId": f"{when:%Y%m%d_%H%M%S}_sim", "minArea": 1.0, "clippedImagery": prov in ("ab", "pl"),
            "downloadable": prov == "ee", "_region": "control"}


def public(scene: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scene.items() if not k.startswith("_")}



def km2(geom: BaseGeometry) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0]) / 1e6


def mbr_side_m(geom: BaseGeometry) -> float:
    w, s, e, n = geom.bounds
    widest = max(GEOD.line_length([w, e], [lat, lat]) for lat in (s, n, min(max(0.0, s), n)))
    return max(widest, GEOD.line_length([w, w], [s, n]))


def tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    lat = max(-85.05, min(85.05, lat))
    scale = 2**z
    x = int((lon + 180) / 360 * scale)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * scale)
    return min(x, scale - 1), min(y, scale - 1)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    scale = 2**z

    def lat(yy: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / scale))))

    return x / scale * 360 - 180, lat(y + 1), (x + 1) / scale * 360 - 180, lat(y)


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def grid_content(rng: Any, map_id: str, tile_zxy: tuple[int, int, int], name: str, kinds: list[str]
                 ) -> tuple[bytes, str]:
    """One grid file of a released map tile, a real file of its type (SKI, SpaceKnow's own format: random bytes)."""
    z, x, y = tile_zxy
    w, s, e, n = tile_bounds(z, x, y)
    if name.endswith(".png"):
        return png((rng.randrange(256), rng.randrange(256), rng.randrange(256))), "image/png"
    if name.endswith(".geojson"):
        feats = [{"type": "Feature", "properties": {"class": rng.choice(kinds), "score": round(rng.random(), 3)},
                  "geometry": {"type": "Point", "coordinates": [rng.uniform(w, e), rng.uniform(s, n)]}}
                 for _ in range(rng.randint(0, 6))]
        return json.dumps({"type": "FeatureCollection", "features": feats}).encode(), "application/geo+json"
    if name.endswith(".json"):
        return json.dumps({"mapId": map_id, "tile": [z, x, y], "bounds": [w, s, e, n]}).encode(), "application/json"
    if name.endswith(".geotiff"):
        values = [rng.randrange(256) for _ in range(16 * 16)]
        return geotiff.write(values, 16, 16, (w, s, e, n), "uint8"), "image/tiff; application=geotiff"
    return rng.randbytes(4096), "application/octet-stream"


def jwt(subject: str, ttl: float) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": "https://spaceknow.auth0.com/", "sub": subject, "aud": AUTH0_CLIENT_ID,
              "iat": now, "exp": now + int(ttl)}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.{secrets.token_urlsafe(32)}"


