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


def named(value: str) -> dict:
    return {**point(0, 0), "properties": {"name": value}}


def test_casei_pattern_of_like_is_folded() -> None:  # pygeofilter 0.4: LIKE with a Function pattern → TypeError
    keep = cql2.predicate(cql2.parse_json({"op": "like", "args": [{"property": "name"},
                                                                  {"op": "casei", "args": ["HEL%"]}]}))
    assert keep(named("Hello")) and not keep(named("World"))


def test_casei_on_the_property_is_evaluated() -> None:  # pygeofilter 0.4: casei → `lower`, a NameError
    keep = cql2.predicate(cql2.parse_text("casei(name) = casei('HELLO')"))
    assert keep(named("hello")) and keep(named("HeLLo")) and not keep(named("help"))
    keep = cql2.predicate(cql2.parse_text("accenti(name) = accenti('équipe')"))
    assert keep(named("equipe"))


def test_functions_outside_the_allow_list_are_refused() -> None:  # pygeofilter 0.4: the native evaluator evals names
    import pytest

    from geofed.errors import InvalidParameter

    for text in ("eval('1') = 1", "name = exec('1')", "system('id') = 0"):
        with pytest.raises(InvalidParameter, match="unknown function"):
            cql2.parse_text(text)
    node = cql2.parse_text("name = 'x'")
    object.__setattr__(node, "rhs", cql2.ast.Function("eval", ["1"]))  # parsed elsewhere (pygeoapi)
    with pytest.raises(InvalidParameter, match="unknown function"):
        cql2.predicate(node)


def test_geometry_literals_shapely_refuses_are_400() -> None:
    import pytest

    from geofed.errors import InvalidParameter

    for geometry in ({"type": "Point", "coordinates": [1, 2, 3, 4]}, {"type": "Polygon", "coordinates": []},
                     {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1]]]}):
        with pytest.raises(InvalidParameter) as caught:
            cql2.parse_json({"op": "s_intersects", "args": [{"property": "geometry"}, geometry]})
        assert caught.value.parameter == "filter"


def test_deep_and_long_filters_are_refused_before_any_recursion() -> None:
    import pytest

    with pytest.raises(cql2.FilterTooComplex):
        cql2.parse_text(" OR ".join(f"name='{i}'" for i in range(300)))  # 300 levels, ~4 000 characters
    with pytest.raises(cql2.FilterTooComplex):
        cql2.parse_text("name='x' OR " * 2000 + "name='y'")  # over 10 000 characters
    deep: dict = {"op": "=", "args": [{"property": "name"}, "x"]}
    for _ in range(3000):
        deep = {"op": "not", "args": [deep]}
    with pytest.raises(cql2.FilterTooComplex):
        cql2.parse_json(deep)
