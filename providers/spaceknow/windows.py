"""Splitting a bbox into search windows SpaceKnow accepts (its search refuses extents over `maxMbrSide`, 400 km).

Windows are equal subdivisions in degrees. Their width is measured (geodesically, pyproj) on the parallel of the
bbox closest to the equator, where a degree of longitude is longest, so every window fits the limit.
"""

from __future__ import annotations

import math

from pyproj import Geod

from geofed.errors import InvalidParameter
from geofed.query import BBox, parse_bbox

GEOD = Geod(ellps="WGS84")


def side_lengths_m(bbox: BBox) -> tuple[float, float]:
    """(widest east-west extent, north-south extent) of a bbox, metres."""
    w, s, e, n = bbox
    nearest_equator = min(max(0.0, s), n)
    per_degree = GEOD.line_length([0.0, 1.0], [nearest_equator, nearest_equator])
    return (e - w) * per_degree, GEOD.line_length([w, w], [s, n])


def split(bbox: BBox, max_side_m: float) -> list[BBox]:
    """The smallest grid of equal windows covering `bbox` whose sides are all ≤ `max_side_m`."""
    width, height = side_lengths_m(bbox)
    nx = max(1, math.ceil(width / max_side_m))
    ny = max(1, math.ceil(height / max_side_m))
    w, s, e, n = bbox
    dx, dy = (e - w) / nx, (n - s) / ny
    return [
        (w + i * dx, s + j * dy, e if i == nx - 1 else w + (i + 1) * dx, n if j == ny - 1 else s + (j + 1) * dy)
        for j in range(ny)
        for i in range(nx)
    ]


def plan(bbox: BBox, max_side_m: float, cap: int, parameter: str = "bbox") -> list[BBox]:
    """`split`, refusing (400 naming `parameter`) a bbox that is not finite WGS84 lon/lat (e.g. the bounds of a
    geometry at latitude 4e16) or that needs more than `cap` windows."""
    checked = parse_bbox(list(bbox), parameter)
    assert checked is not None
    if not (math.isfinite(max_side_m) and max_side_m > 0):
        raise ValueError(f"window side must be a positive number of metres, got {max_side_m!r}")
    windows = split(checked, max_side_m)
    if len(windows) > cap:
        width, height = side_lengths_m(bbox)
        raise InvalidParameter(
            f"'{parameter}' is too large for SpaceKnow: {width / 1000:.0f} × {height / 1000:.0f} km needs "
            f"{len(windows)} search windows of at most {max_side_m / 1000:.0f} km, more than the limit of {cap}; "
            "narrow the bbox",
            parameter=parameter,
        )
    return windows
