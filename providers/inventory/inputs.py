"""The inputs of `emissions-inventory`, checked once (400 naming the input), and the area limits.

The area of interest is a GeoJSON Polygon or MultiPolygon (`geofed.query.parse_geometry`: valid, WGS84, at most
`GEOFED_MAX_VERTICES` vertices; a self-intersecting ring is invalid). Its geodesic area (WGS84 ellipsoid) decides
how it may run:
- above `GEOFED_INVENTORY_MAX_KM2` (default 1 000 000 km²): refused (400, `geometry`);
- above `GEOFED_INVENTORY_SYNC_MAX_KM2` (default 20 000 km²): only as a job (`Prefer: respond-async`);
- a synchronous run that finds more than `GEOFED_INVENTORY_SYNC_MAX_FEATURES` (default 5 000) plumes, sources
  and plots stops and answers 400 asking for `Prefer: respond-async`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import shapely.geometry
from pyproj import Geod

from geofed.errors import InvalidParameter
from geofed.query import BBox, geometry_bounds, parse_geometry, parse_interval, parse_number, rfc3339
from geofed.settings import Settings, get_settings

GASES = ("CH4", "CO2")
MAX_EPOCH_COLLECTIONS = 10
DEFAULT_CLOUD_COVER_MAX = 20.0
GEOD = Geod(ellps="WGS84")


class AsyncRequired(InvalidParameter):
    """A synchronous request too large to answer while the client waits: send `Prefer: respond-async`."""

    def __init__(self, why: str) -> None:
        super().__init__(f"{why}: this inventory runs only as a job; send the header 'Prefer: respond-async' "
                         "and follow the job's status link", parameter="Prefer")


@dataclass(frozen=True)
class Inputs:
    geometry: dict[str, Any]
    start: str  # RFC 3339, UTC
    end: str
    gases: tuple[str, ...]
    epoch_collections: tuple[str, ...]
    imagery: bool
    cloud_cover_max: float
    area_km2: float

    @property
    def interval(self) -> tuple[dt.datetime, dt.datetime]:
        return (dt.datetime.fromisoformat(self.start.replace("Z", "+00:00")),
                dt.datetime.fromisoformat(self.end.replace("Z", "+00:00")))

    @property
    def bbox(self) -> BBox:
        return geometry_bounds(self.geometry)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "gases": list(self.gases), "epoch_collections": list(self.epoch_collections)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inputs:
        return cls(**{**data, "gases": tuple(data["gases"]), "epoch_collections": tuple(data["epoch_collections"])})


def area_km2(geometry: dict[str, Any]) -> float:
    """Geodesic area of a (multi)polygon on the WGS84 ellipsoid, km²."""
    area, _ = GEOD.geometry_area_perimeter(shapely.geometry.shape(geometry))
    return abs(area) / 1e6


def _names(value: Any, name: str) -> list[str]:
    """A list of strings (a single string or a comma-separated one is accepted)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidParameter(f"'{name}' must be a list of strings", parameter=name)
    return [v.strip() for v in value]


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidParameter(f"'{name}' must be true or false, got {value!r}", parameter=name)


def parse_inputs(data: dict[str, Any], settings: Settings | None = None) -> Inputs:
    settings = settings or get_settings()
    known = {"geometry", "datetime", "gases", "epoch_collections", "imagery", "cloud_cover_max"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidParameter(f"unknown input {', '.join(map(repr, unknown))}; the inputs are "
                               f"{', '.join(sorted(known))}", parameter=unknown[0])
    geometry = parse_geometry(data.get("geometry"), "geometry", types=("Polygon", "MultiPolygon"),
                              max_vertices=settings.max_vertices)
    if geometry is None:
        raise InvalidParameter("'geometry' is required: a GeoJSON Polygon or MultiPolygon", parameter="geometry")
    km2 = area_km2(geometry)
    if km2 > settings.inventory_max_km2:
        raise InvalidParameter(f"'geometry' covers {km2:,.0f} km², more than the {settings.inventory_max_km2:,.0f} "
                               "km² an inventory may cover; split it", parameter="geometry")
    raw_time = data.get("datetime")
    if not isinstance(raw_time, str) or not raw_time.strip():
        raise InvalidParameter("'datetime' is required: an RFC 3339 interval start/end", parameter="datetime")
    start, end = parse_interval(raw_time, "datetime")
    if start is None or end is None:
        raise InvalidParameter("'datetime' must be a closed interval start/end (no '..')", parameter="datetime")
    gases = _names(data.get("gases", list(GASES)), "gases")
    bad = sorted(set(gases) - set(GASES))
    if bad or not gases:
        raise InvalidParameter(f"'gases' must be a non-empty subset of {', '.join(GASES)}", parameter="gases")
    collections = _names(data.get("epoch_collections", []), "epoch_collections")
    if len(collections) > MAX_EPOCH_COLLECTIONS:
        raise InvalidParameter(f"'epoch_collections' names more than {MAX_EPOCH_COLLECTIONS} collections",
                               parameter="epoch_collections")
    cloud = parse_number(data.get("cloud_cover_max", DEFAULT_CLOUD_COVER_MAX), "cloud_cover_max")
    if not 0 <= cloud <= 100:
        raise InvalidParameter("'cloud_cover_max' must be between 0 and 100 (%)", parameter="cloud_cover_max")
    return Inputs(geometry=geometry, start=rfc3339(start, fraction=start.microsecond != 0) or "",
                  end=rfc3339(end, fraction=end.microsecond != 0) or "",
                  gases=tuple(g for g in GASES if g in gases), epoch_collections=tuple(dict.fromkeys(collections)),
                  imagery=_boolean(data.get("imagery", True), "imagery"), cloud_cover_max=cloud, area_km2=km2)


def check_sync(inputs: Inputs, settings: Settings | None = None) -> None:
    """A synchronous request over a large area is refused before anything is read upstream."""
    settings = settings or get_settings()
    if inputs.area_km2 > settings.inventory_sync_max_km2:
        raise AsyncRequired(f"the area covers {inputs.area_km2:,.0f} km², more than the "
                            f"{settings.inventory_sync_max_km2:,.0f} km² answered synchronously")
