"""Seeded sample data for the CarbonMapper simulator: facilities at real emission hot spots, scenes (one
instrument overpass each), the plumes detected in them and the sources (clusters of plumes at one site).

Everything is generated once per app from `random.Random(seed)`; the same seed gives the same catalog.
Field names and formats follow the doc's Plume and Scene objects and the `sources.geojson` properties in
`observed.md`. Timestamps are kept as aware datetimes here and rendered as RFC 3339 `...Z` on output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

GASES = ("CH4", "CO2")
SECTORS = ("1B2", "6A", "6B", "4B", "1B1a", "1A1", "other", "NULL", "NA")
INSTRUMENTS = ("GAO", "ang", "av3", "emi", "tan", "ssc")
QUALITIES = ("good", "questionable", "bad")
EPS_M = 100  # the clustering distance the source names carry (`..._100m_...`)

# Simulated "today": published_at never goes past it, so data does not depend on the wall clock.
NOW = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Instrument:
    code: str
    platform: str
    gsd: float
    half_size: float  # scene footprint half-width, degrees
    start: dt.datetime
    end: dt.datetime
    airborne: bool
    co2: bool  # retrieves CO2 as well as CH4


def _d(y: int, m: int = 1, d: int = 1) -> dt.datetime:
    return dt.datetime(y, m, d, tzinfo=dt.UTC)


INSTRUMENT_INFO: dict[str, Instrument] = {
    "GAO": Instrument("GAO", "GAO", 4.5, 0.05, _d(2019), _d(2024, 12), True, True),
    "ang": Instrument("ang", "AVIRIS-NG", 3.0, 0.04, _d(2016), _d(2022, 6), True, False),
    "av3": Instrument("av3", "AVIRIS-3", 3.5, 0.04, _d(2022, 6), _d(2025, 6), True, True),
    "emi": Instrument("emi", "EMIT", 60.0, 0.35, _d(2022, 8), _d(2025, 6), False, True),
    "tan": Instrument("tan", "Tanager-1", 30.0, 0.12, _d(2024, 8, 16), _d(2025, 6), False, True),
    "ssc": Instrument("ssc", "SSC", 30.0, 0.10, _d(2023, 3), _d(2025, 6), False, False),
}

# name, lon, lat, radius (deg), facilities, sector weights, offshore share
SITES: list[tuple[str, float, float, float, int, dict[str, float], float]] = [
    ("Permian Basin", -103.6, 31.9, 0.9, 110, {"1B2": 1.0}, 0.0),
    ("San Joaquin Valley", -119.2, 35.6, 0.5, 70, {"1B2": 0.6, "4B": 0.4}, 0.0),
    ("Four Corners", -108.2, 36.8, 0.4, 45, {"1B1a": 0.4, "1B2": 0.45, "1A1": 0.15}, 0.0),
    ("Los Angeles Basin", -118.2, 34.0, 0.3, 35, {"6A": 0.5, "6B": 0.25, "1B2": 0.25}, 0.0),
    ("Marcellus", -76.6, 41.7, 0.5, 30, {"1B2": 0.9, "6A": 0.1}, 0.0),
    ("Turkmenistan West", 54.0, 39.4, 0.7, 55, {"1B2": 1.0}, 0.2),
    ("Hassi Messaoud", 6.1, 31.7, 0.4, 30, {"1B2": 1.0}, 0.0),
    ("Shanxi", 112.6, 37.8, 0.6, 45, {"1B1a": 0.7, "1A1": 0.3}, 0.0),
    ("Delhi", 77.1, 28.6, 0.3, 15, {"6A": 0.8, "6B": 0.2}, 0.0),
    ("Buenos Aires", -58.5, -34.6, 0.3, 12, {"6A": 1.0}, 0.0),
    ("Netherlands dairy belt", 5.8, 51.6, 0.4, 20, {"4B": 1.0}, 0.0),
    ("Mpumalanga", 29.2, -26.1, 0.5, 25, {"1A1": 0.5, "1B1a": 0.5}, 0.0),
    ("Bowen Basin", 148.4, -22.5, 0.7, 30, {"1B1a": 1.0}, 0.0),
    ("Kuwait", 47.8, 29.1, 0.4, 25, {"1B2": 0.7, "1A1": 0.3}, 0.1),
]
US_SITES = {"Permian Basin", "San Joaquin Valley", "Four Corners", "Los Angeles Basin", "Marcellus"}
# Median emission (kg/h) of one plume by sector; log-normal spread (sigma) around it.
MEDIAN_KGH = {"1B2": 380.0, "1B1a": 1400.0, "6A": 900.0, "6B": 160.0, "4B": 220.0, "1A1": 350_000.0,
              "other": 300.0, "NULL": 250.0, "NA": 300.0}


@dataclass
class Facility:
    index: int
    site: str
    lon: float
    lat: float
    sector: str
    gas: str
    offshore: bool


@dataclass
class Catalog:
    plumes: list[dict[str, Any]] = field(default_factory=list)
    scenes: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)  # {"point": ..., "properties": ...}
    plume_by_key: dict[str, dict[str, Any]] = field(default_factory=dict)  # plume name and uuid
    scene_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_of_plume: dict[str, str] = field(default_factory=dict)  # plume name → source name


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _facilities(rng: random.Random) -> list[Facility]:
    out: list[Facility] = []
    for site, lon0, lat0, radius, count, sectors, offshore in SITES:
        placed: list[tuple[float, float]] = []
        while len(placed) < count:
            r = radius * math.sqrt(rng.random())
            a = rng.random() * 2 * math.pi
            lon, lat = lon0 + r * math.cos(a) / math.cos(math.radians(lat0)), lat0 + r * math.sin(a)
            # facilities are kilometres apart, so clusters with eps = 100 m never merge two of them
            if any(abs(lon - x) < 0.01 and abs(lat - y) < 0.01 for x, y in placed):
                continue
            placed.append((lon, lat))
            roll = rng.random()
            sector = "other" if roll < 0.03 else "NULL" if roll < 0.045 else "NA" if roll < 0.06 else _weighted(
                rng, sectors)
            gas = "CO2" if sector == "1A1" else "CH4"
            out.append(Facility(len(out), site, round(lon, 5), round(lat, 5), sector, gas, rng.random() < offshore))
    return out


def _pick_instrument(rng: random.Random, site: str) -> Instrument:
    if site in US_SITES:
        weights = {"GAO": 0.3, "ang": 0.2, "av3": 0.15, "emi": 0.15, "tan": 0.12, "ssc": 0.08}
    else:
        weights = {"GAO": 0.04, "ang": 0.02, "av3": 0.02, "emi": 0.45, "tan": 0.3, "ssc": 0.17}
    return INSTRUMENT_INFO[_weighted(rng, weights)]


def _plume_bounds(lon: float, lat: float, length_km: float, direction_deg: float) -> list[float]:
    """[west, south, east, north] of a plume blown `length_km` downwind of its origin."""
    dlat = length_km / 111.0 * math.cos(math.radians(direction_deg))
    dlon = length_km / (111.0 * math.cos(math.radians(lat))) * math.sin(math.radians(direction_deg))
    pad = 0.0015
    xs, ys = (lon, lon + dlon), (lat, lat + dlat)
    return [round(min(xs) - pad, 6), round(min(ys) - pad, 6), round(max(xs) + pad, 6), round(max(ys) + pad, 6)]


def _letters(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def generate(rng: random.Random, min_plumes: int = 5200) -> Catalog:
    facilities = _facilities(rng)
    by_site: dict[str, list[Facility]] = {}
    for f in facilities:
        by_site.setdefault(f.site, []).append(f)
    site_weights = {s[0]: s[4] for s in SITES}
    cat = Catalog()
    plume_facility: dict[str, Facility] = {}
    seen_names: set[str] = set()
    forced = list(INSTRUMENTS)  # the first scenes use every instrument once, so every enum value occurs
    while len(cat.plumes) < min_plumes:
        site = _weighted(rng, site_weights)
        inst = INSTRUMENT_INFO[forced.pop()] if forced else _pick_instrument(rng, site)
        span = (inst.end - inst.start).total_seconds()
        day = inst.start + dt.timedelta(seconds=rng.random() * span)
        lon0 = next(s[1] for s in SITES if s[0] == site)
        local_hour = 9.5 + rng.random() * 4  # morning to early afternoon local time
        utc_hour = (local_hour - lon0 / 15.0) % 24
        ts = day.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(hours=utc_hour)
        ts = ts.replace(microsecond=0)
        part = 0
        name = f"{inst.code}{ts:%Y%m%d}t{ts:%H%M%S}p{part:04d}"
        while name in seen_names:
            part += 1
            name = f"{inst.code}{ts:%Y%m%d}t{ts:%H%M%S}p{part:04d}"
        seen_names.add(name)
        centre = rng.choice(by_site[site])
        hw = inst.half_size * (0.6 + 0.8 * rng.random())
        hh = inst.half_size * (0.6 + 0.8 * rng.random())
        bounds = [round(centre.lon - hw, 6), round(centre.lat - hh, 6), round(centre.lon + hw, 6),
                  round(centre.lat + hh, 6)]
        inside = [f for f in by_site[site] if bounds[0] <= f.lon <= bounds[2] and bounds[1] <= f.lat <= bounds[3]]
        inside = [f for f in inside if f.gas == "CH4" or inst.co2]
        wanted = 0 if rng.random() < 0.25 else min(1 + int(rng.expovariate(0.8)), 6)
        emitting = rng.sample(inside, min(wanted, len(inside)))
        scene_id = _uuid(rng)
        cloud = round(min(100.0, rng.expovariate(1 / 12.0)), 1)
        first_light = inst.code == "tan" and ts < _d(2025, 1, 15)
        scene = {
            "id": scene_id, "bounds": bounds, "instrument": inst.code,
            "mission_phase": "first_light" if first_light else None,
            "usersceneassignmentstatus_set": [], "plume_count": len(emitting), "deleted_plume_count": 0,
            "hidden_plume_count": 0, "published_plume_count": len(emitting), "is_quick_view": False,
            "name": name, "timestamp": ts, "is_quick_look": False,
            "_cloud_cover_pct": cloud, "_assessed": _assessed(name), "_site": site,
            "_gases": sorted({f.gas for f in emitting}),
            "_sectors": sorted({f.sector for f in emitting}), "_emissions": [],
        }
        for i, fac in enumerate(emitting):
            plume = _plume(rng, fac, inst, scene, f"{name}-{_letters(i)}", first_light)
            scene["_emissions"].append(plume["emission_auto"])
            cat.plumes.append(plume)
            plume_facility[plume["plume_id"]] = fac
        cat.scenes.append(scene)
    for plume in cat.plumes:
        cat.plume_by_key[plume["plume_id"]] = plume
        cat.plume_by_key[plume["id"]] = plume
    cat.scene_by_name = {s["name"]: s for s in cat.scenes}
    _cluster(cat, plume_facility)
    return cat


def _assessed(scene_name: str) -> bool:
    """Whether a scene has been assessed (scenes/annotated lists only assessed ones): about one in eight is not,
    decided from the name's hash so that the seeded random stream (and every other value) stays as it was."""
    return hashlib.sha1(scene_name.encode()).digest()[0] >= 32


def _plume(rng: random.Random, fac: Facility, inst: Instrument, scene: dict[str, Any], name: str,
           first_light: bool) -> dict[str, Any]:
    ts: dt.datetime = scene["timestamp"]
    lon = round(fac.lon + rng.gauss(0, 0.00025), 6)
    lat = round(fac.lat + rng.gauss(0, 0.00025), 6)
    sigma = 0.7 if fac.gas == "CO2" else 1.15
    emission: float | None = round(min(MEDIAN_KGH[fac.sector] * math.exp(rng.gauss(0, sigma)), 3e6), 1)
    emission = max(emission, 12.0) if emission is not None else None
    hide = rng.random() < 0.03  # a few plumes are published without a quantified emission
    if hide:
        emission = None
    wind_speed = round(max(0.5, rng.gammavariate(3.0, 1.2)), 2)
    wind_dir = round(rng.random() * 360, 1)
    length_km = 0.2 + (emission or 100) ** 0.35 * 0.05
    published = min(ts + dt.timedelta(days=2 + rng.random() * 80), NOW)
    gas_slug = "ch4-mfa" if fac.gas == "CH4" else "co2-mfal"
    key = f"{inst.code}/{ts:%Y}/{name}"
    return {
        "id": _uuid(rng),
        "plume_id": name,
        "gas": fac.gas,
        "geometry_json": {"bbox": [lon, lat, lon, lat], "type": "Point", "coordinates": [lon, lat]},
        "scene_id": scene["id"],
        "scene_timestamp": ts,
        "instrument": inst.code,
        "mission_phase": "first_light" if first_light else None,
        "platform": inst.platform,
        "emission_auto": emission,
        "emission_uncertainty_auto": round(emission * (0.15 + 0.3 * rng.random()), 1) if emission else None,
        "emission_cmf_type": "mfa" if fac.gas == "CH4" else "mfal",
        "gsd": inst.gsd,
        "sensitivity_mode": "normal" if inst.airborne else rng.choice(["normal", "high"]),
        "off_nadir": round(rng.random() * (5 if inst.airborne else 25), 2),
        "plume_png": f"{key}/{name}_plume.png",
        "plume_rgb_png": f"{key}/{name}_plume_rgb.png",
        "plume_tif": f"{key}/{name}_plume.tif",
        "con_tif": f"{key}/{name}_con.tif",
        "rgb_png": f"{key}/{name}_rgb.png",
        "plume_bounds": _plume_bounds(lon, lat, length_km, wind_dir),
        "plume_quality": rng.choices(QUALITIES, weights=[0.78, 0.17, 0.05])[0],
        "wind_speed_avg_auto": wind_speed,
        "wind_direction_avg_auto": wind_dir,
        "emission_version": "v3a",
        "processing_software": "3.2.1",
        "publication_sources": [],
        "is_offshore": fac.offshore,
        "collection": f"l3a-ime-{gas_slug}-v3a",
        "cmf_type": "mfa" if fac.gas == "CH4" else "mfal",
        "sector": fac.sector,
        "status": "published",
        "hide_emission": hide,
        "published_at": published,
        "modified": min(published + dt.timedelta(days=rng.random() * 20), NOW),
        "_phme": rng.random() < 0.02,
    }


def _cluster(cat: Catalog, plume_facility: dict[str, Facility]) -> None:
    """Groups plumes into sources. Facilities lie kilometres apart and plumes within ~30 m of theirs, so a
    DBSCAN with eps = 100 m over same-gas, same-sector plumes yields exactly one cluster per facility."""
    groups: dict[int, list[dict[str, Any]]] = {}
    scenes_by_site: dict[str, list[dict[str, Any]]] = {}
    for scene in cat.scenes:
        scenes_by_site.setdefault(scene["_site"], []).append(scene)
    for plume in cat.plumes:
        groups.setdefault(plume_facility[plume["plume_id"]].index, []).append(plume)
    for cluster_id, (_, plumes) in enumerate(sorted(groups.items())):
        lon = sum(p["geometry_json"]["coordinates"][0] for p in plumes) / len(plumes)
        lat = sum(p["geometry_json"]["coordinates"][1] for p in plumes) / len(plumes)
        first = plumes[0]
        name = f"{first['gas']}_{first['sector']}_{EPS_M}m_{lon:.5f}_{lat:.5f}"
        emissions = [p["emission_auto"] for p in plumes if p["emission_auto"] is not None]
        uncertainties = [p["emission_uncertainty_auto"] for p in plumes if p["emission_uncertainty_auto"] is not None]
        observed = [s for s in scenes_by_site[plume_facility[first["plume_id"]].site]
                    if s["bounds"][0] <= lon <= s["bounds"][2] and s["bounds"][1] <= lat <= s["bounds"][3]]
        dates = sorted({p["scene_timestamp"].date().isoformat() for p in plumes})
        props = {
            "source_name": name,
            "gas": first["gas"],
            "sector": first["sector"],
            "plume_count": len(plumes),
            "date_count": len(dates),
            "plume_ids": [p["plume_id"] for p in plumes],
            "emission_auto": round(sum(emissions) / len(emissions), 1) if emissions else None,
            "emission_uncertainty_auto": round(sum(uncertainties) / len(uncertainties), 1) if uncertainties
            else None,
            "cluster_id": cluster_id,
            "persistence": round(len(dates) / max(1, len({s["timestamp"].date() for s in observed})), 3),
            "timestamp_min": min(p["scene_timestamp"] for p in plumes),
            "timestamp_max": max(p["scene_timestamp"] for p in plumes),
            "published_at_min": min(p["published_at"] for p in plumes),
            "published_at_max": max(p["published_at"] for p in plumes),
        }
        source = {"point": {"type": "Point", "coordinates": [round(lon, 5), round(lat, 5)]}, "properties": props,
                  "_plumes": plumes, "_observed": observed}
        cat.sources.append(source)
        cat.source_by_name[name] = source
        for p in plumes:
            cat.source_of_plume[p["plume_id"]] = name


def add_plume(cat: Catalog, rng: random.Random, spec: dict[str, Any]) -> dict[str, Any]:
    """A plume published *now* (wall clock) at `spec["lon"], spec["lat"]`, for demos and alert tests
    (`POST /_sim/plumes`). Optional: gas, sector, instrument, emission_auto, scene_timestamp, published_at.
    The sources (clusters) are not recomputed: a new plume belongs to no source until the simulator restarts."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    gas = str(spec.get("gas") or "CH4")
    inst = INSTRUMENT_INFO[str(spec.get("instrument") or "emi")]
    lon, lat = float(spec["lon"]), float(spec["lat"])
    ts = _parse(spec.get("scene_timestamp")) or now - dt.timedelta(hours=1)
    part = 0
    while f"{inst.code}{ts:%Y%m%d}t{ts:%H%M%S}p{part:04d}-A" in cat.plume_by_key:
        part += 1
    name = f"{inst.code}{ts:%Y%m%d}t{ts:%H%M%S}p{part:04d}-A"
    fac = Facility(-1, "control", lon, lat, str(spec.get("sector") or ("1A1" if gas == "CO2" else "1B2")), gas, False)
    plume = _plume(rng, fac, inst, {"id": _uuid(rng), "timestamp": ts}, name, False)
    coords = [lon, lat]  # exactly where asked: tests decide inside / outside an area by these
    published = _parse(spec.get("published_at")) or now
    plume.update({"geometry_json": {"bbox": coords * 2, "type": "Point", "coordinates": coords},
                  "published_at": published, "modified": published})
    if "emission_auto" in spec:
        plume["emission_auto"] = spec["emission_auto"]
        plume["hide_emission"] = spec["emission_auto"] is None
    cat.plumes.append(plume)
    cat.plume_by_key[plume["plume_id"]] = plume
    cat.plume_by_key[plume["id"]] = plume
    return plume


def _parse(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)
