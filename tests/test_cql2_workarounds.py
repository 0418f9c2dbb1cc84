"""pygeofilter 0.4 workarounds (geofed/cql2.py), one test each: bbox literals must mean [west, south, east, north]."""

from __future__ import annotations

from geofed import cql2


def point(x: float, y: float) -> dict:
    return {"type": "Feature", "id": "p", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": {}}


def test_cql2_json_bbox_axes_are_not_scrambled() -> None:  # pygeofilter #163
    node = cql2.parse_json({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [-10, 40, 10, 50]}]})
    keep = cql2.predicate(node)
    assert keep(point(0, 45))
    assert not keep(point(30, 45))  # inside the scrambled envelope x∈[-10,40], y∈[10,50]; outside the real one


def test_cql2_text_bbox_literal_is_a_geometry() -> None:  # pygeofilter #143
    keep = cql2.predicate(cql2.parse_text("S_INTERSECTS(geometry, BBOX(-10, 40, 10, 50))"))
    assert keep(point(0, 45))
    assert not keep(point(30, 45))


def test_missing_property_never_matches() -> None:
    keep = cql2.predicate(cql2.parse_text("emission_auto > 1000"))
    assert not keep(point(0, 0))
    assert keep({**point(0, 0), "properties": {"emission_auto": 1500.0}})
