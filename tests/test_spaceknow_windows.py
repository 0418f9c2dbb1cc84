"""Search windows: a bbox that is not finite WGS84 lon/lat is a 400 naming the parameter, never a crash (issue 15:
the bounds of a geometry at latitude 4e16 made the window split call `math.ceil(NaN)`)."""

from __future__ import annotations

import math

import pytest

from geofed.errors import InvalidParameter
from providers.spaceknow import windows


@pytest.mark.parametrize("bbox", [(-103.0, 32.0, -103.0, 4e16), (math.nan, 30.0, -101.0, 31.0),
                                  (-104.0, -math.inf, -101.0, 31.0), (-200.0, 30.0, -101.0, 31.0)])
def test_a_bbox_outside_wgs84_is_a_400_naming_the_parameter(bbox: tuple[float, ...]) -> None:
    with pytest.raises(InvalidParameter) as caught:
        windows.plan(bbox, 360_000.0, 16, "intersects")  # type: ignore[arg-type]
    assert caught.value.parameter == "intersects" and "'intersects'" in caught.value.message


def test_windows_tile_the_bbox_exactly_and_fit_the_limit() -> None:
    bbox = (-109.5, 31.0, -100.0, 33.0)
    found = windows.plan(bbox, 360_000.0, 16)
    assert len(found) > 1
    assert (min(w[0] for w in found), min(w[1] for w in found), max(w[2] for w in found),
            max(w[3] for w in found)) == bbox
    assert all(max(windows.side_lengths_m(w)) <= 360_000.0 for w in found)
    assert windows.plan((-103.0, 32.0, -103.0, 32.0), 360_000.0, 16) == [(-103.0, 32.0, -103.0, 32.0)]


def test_a_bbox_needing_too_many_windows_is_refused() -> None:
    with pytest.raises(InvalidParameter) as caught:
        windows.plan((-125.0, 25.0, -65.0, 49.0), 360_000.0, 16)
    assert caught.value.parameter == "bbox" and "16" in caught.value.message
