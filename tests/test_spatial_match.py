"""The engine's spatial condition (`geofed.query.matcher`): the bounds shortcut must give shapely's answer.

Expected answers come from shapely itself (`intersects` on the full geometries), never from the code under test.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import shapely.geometry

from geofed.query import geometry_bounds, matcher

AREA = (10.0, 40.0, 12.0, 42.0)
# An L-shaped polygon whose bounds overlap AREA while the shape itself stays outside it.
L_SHAPE = {"type": "Polygon", "coordinates": [[[12.5, 39.0], [13.0, 39.0], [13.0, 43.0], [9.0, 43.0], [9.0, 42.5],
                                               [12.5, 42.5], [12.5, 39.0]]]}


def feature(geometry: dict[str, Any], bbox: list[float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Feature", "id": "x", "geometry": geometry, "properties": {}}
    if bbox is not None:
        out["bbox"] = bbox
    return out


def truth(geometry: dict[str, Any], area: Any) -> bool:
    return bool(area.intersects(shapely.geometry.shape(geometry)))


def test_bounds_that_overlap_a_shape_outside_the_area_do_not_match() -> None:
    assert not truth(L_SHAPE, shapely.geometry.box(*AREA))  # the premise
    assert not matcher(bbox=AREA)(feature(L_SHAPE))
    w, s, e, n = geometry_bounds(L_SHAPE)
    assert not matcher(bbox=AREA)(feature(L_SHAPE, [w, s, e, n]))


@pytest.mark.parametrize("seed", range(5))
def test_random_shapes_match_as_shapely_says(seed: int) -> None:
    rng = random.Random(seed)
    area_box = shapely.geometry.box(*AREA)
    triangle = {"type": "Polygon", "coordinates": [[[11.5, 41.5], [13.5, 41.5], [13.5, 43.5], [11.5, 41.5]]]}
    match_box, match_triangle = matcher(bbox=AREA), matcher(bbox=AREA, intersects=triangle)
    both = area_box.intersection(shapely.geometry.shape(triangle))
    for _ in range(300):
        x, y = rng.uniform(8, 14), rng.uniform(38, 44)
        kind = rng.choice(["Point", "Polygon", "LineString"])
        if kind == "Point":
            geometry: dict[str, Any] = {"type": "Point", "coordinates": [x, y]}
        elif kind == "LineString":
            geometry = {"type": "LineString", "coordinates": [[x, y], [x + rng.uniform(-2, 2), y + rng.uniform(-2, 2)]]}
        else:
            dx, dy = rng.uniform(0.01, 2), rng.uniform(0.01, 2)
            geometry = {"type": "Polygon", "coordinates": [[[x, y], [x + dx, y], [x, y + dy], [x, y]]]}
        with_bbox = feature(geometry, list(shapely.geometry.shape(geometry).bounds))
        for obj in (feature(geometry), with_bbox):
            assert match_box(obj) == truth(geometry, area_box), geometry
            assert match_triangle(obj) == truth(geometry, both), geometry


def test_an_item_across_the_antimeridian_is_left_to_shapely() -> None:
    # a STAC bbox with west > east (RFC 7946 §5.2); its geometry is a MultiPolygon on both sides
    geometry = {"type": "MultiPolygon", "coordinates": [
        [[[179.0, -1.0], [180.0, -1.0], [180.0, 1.0], [179.0, 1.0], [179.0, -1.0]]],
        [[[-180.0, -1.0], [-179.0, -1.0], [-179.0, 1.0], [-180.0, 1.0], [-180.0, -1.0]]]]}
    item = feature(geometry, [179.0, -1.0, -179.0, 1.0])
    assert matcher(bbox=(-179.5, -0.5, -179.2, 0.5))(item)
    assert not matcher(bbox=(0.0, -0.5, 1.0, 0.5))(item)


def test_objects_without_geometry_never_match_a_spatial_condition() -> None:
    assert not matcher(bbox=AREA)({"type": "Feature", "id": "x", "geometry": None, "properties": {}})
    empty = {"type": "Polygon", "coordinates": []}
    assert not matcher(bbox=AREA)(feature(empty))


def test_geometry_bounds_walks_every_kind() -> None:
    shapes = [
        {"type": "Point", "coordinates": [1, 2]},
        {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 5]], [[-3, 2], [4, -1]]]},
        L_SHAPE,
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [7, 8]}, L_SHAPE]},
    ]
    for geometry in shapes:
        assert geometry_bounds(geometry) == pytest.approx(shapely.geometry.shape(geometry).bounds)
