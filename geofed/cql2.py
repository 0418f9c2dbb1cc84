"""CQL2 for both faces: parsing (with the pygeofilter 0.4 workarounds), local evaluation, and pushdown.

Local evaluation uses pygeofilter's native evaluator on a feature's properties. Pushdown is always a
narrowing: an upstream receives the AND-conjuncts it can express, and geofed still evaluates the whole
filter on what comes back, so results stay exact whatever an upstream does with what it was sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pygeofilter
import shapely.geometry
from pygeofilter import ast, values
from pygeofilter.backends.native.evaluate import NativeEvaluator
from pygeofilter.parsers.cql2_json import parse as _parse_json
from pygeofilter.parsers.cql2_text import parse as _parse_text

from geofed.errors import InvalidParameter

_PYGEOFILTER_BUGGY = tuple(int(p) for p in pygeofilter.__version__.split(".")[:2]) <= (0, 4)


# ----------------------------------------------------------------- parsing (+ workarounds)
def _fix_bbox_function(node: Any) -> Any:
    """pygeofilter #143: CQL2-text `BBOX(x1, y1, x2, y2)` as a geometry literal parses as a function call."""
    if isinstance(node, ast.Function) and node.name.lower() == "bbox" and len(node.arguments) in (4, 6):
        a = [float(v) for v in node.arguments]
        minx, miny, maxx, maxy = (a[0], a[1], a[3], a[4]) if len(a) == 6 else a
        return values.Envelope(minx, maxx, miny, maxy)
    if isinstance(node, ast.Node):
        for name, value in list(vars(node).items()):
            if isinstance(value, (ast.Node, values.Envelope)) or isinstance(value, list):
                fixed = [_fix_bbox_function(v) for v in value] if isinstance(value, list) else _fix_bbox_function(
                    value
                )
                object.__setattr__(node, name, fixed)
    return node


def _fix_json_bbox(node: Any) -> Any:
    """pygeofilter #163: CQL2-JSON `{"bbox": [minx, miny, maxx, maxy]}` is read as Envelope(x1, x2, y1, y2)."""
    if isinstance(node, dict):
        if set(node) == {"bbox"} and isinstance(node["bbox"], list):
            b = node["bbox"]
            b = [b[0], b[1], b[3], b[4]] if len(b) == 6 else b
            return {"bbox": [b[0], b[2], b[1], b[3]]}
        return {k: _fix_json_bbox(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_json_bbox(v) for v in node]
    return node


def parse_text(text: str, parameter: str = "filter") -> ast.Node:
    try:
        node = _parse_text(text)
    except Exception as exc:
        raise InvalidParameter(f"invalid CQL2 text in '{parameter}': {exc}".split("\n")[0],
                               parameter=parameter) from None
    return _fix_bbox_function(node) if _PYGEOFILTER_BUGGY else node


def parse_json(obj: Any, parameter: str = "filter") -> ast.Node:
    try:
        return _parse_json(_fix_json_bbox(obj) if _PYGEOFILTER_BUGGY else obj)
    except Exception as exc:
        raise InvalidParameter(f"invalid CQL2 JSON in '{parameter}': {exc}", parameter=parameter) from None


def fix_parsed(node: Any) -> Any:
    """Applies the text workaround to an AST parsed elsewhere (pygeoapi parses GET `filter=` itself)."""
    return _fix_bbox_function(node) if (_PYGEOFILTER_BUGGY and node is not None) else node


# ----------------------------------------------------------------- structure
def conjuncts(node: ast.Node | None) -> Iterator[ast.Node]:
    """The AND-ed parts of a filter (a filter that is not an AND is its own single part)."""
    if node is None:
        return
    if isinstance(node, ast.And):
        yield from conjuncts(node.lhs)
        yield from conjuncts(node.rhs)
    else:
        yield node


def attributes(node: Any) -> set[str]:
    """Every property name a filter refers to."""
    found: set[str] = set()
    if isinstance(node, ast.Attribute):
        found.add(node.name)
    if isinstance(node, ast.Node):
        for child in node.get_sub_nodes():
            found |= attributes(child)
    return found


def simple_comparison(node: ast.Node) -> tuple[str, str, Any] | None:
    """(property, op, value) for `prop <op> literal` conjuncts, op in = <> < <= > >=; else None."""
    ops = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<", ast.LessEqual: "<=",
           ast.GreaterThan: ">", ast.GreaterEqual: ">="}
    op = ops.get(type(node))
    if op is None:
        return None
    lhs, rhs = node.lhs, node.rhs  # type: ignore[attr-defined]
    if isinstance(lhs, ast.Attribute) and not isinstance(rhs, ast.Node):
        return lhs.name, op, rhs
    if isinstance(rhs, ast.Attribute) and not isinstance(lhs, ast.Node):
        flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        return rhs.name, flipped, lhs
    return None


def in_list(node: ast.Node) -> tuple[str, list[Any]] | None:
    if isinstance(node, ast.In) and isinstance(node.lhs, ast.Attribute) and not node.not_:
        return node.lhs.name, list(node.sub_nodes)
    return None


# ----------------------------------------------------------------- local evaluation
def _to_datetime(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-":
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return value


def evaluation_record(feature: dict[str, Any], temporal: set[str] | None = None) -> dict[str, Any]:
    """What a filter sees of a GeoJSON feature or STAC item: its properties, id, geometry and collection."""
    props = dict(feature.get("properties") or {})
    for name in temporal or ():
        if name in props:
            props[name] = _to_datetime(props[name])
    if "datetime" in props:
        props["datetime"] = _to_datetime(props["datetime"])
    props.setdefault("id", feature.get("id"))
    if feature.get("collection") is not None:
        props.setdefault("collection", feature.get("collection"))
    geometry = feature.get("geometry")
    props["geometry"] = shapely.geometry.shape(geometry) if geometry else None
    return props


def predicate(node: ast.Node | None, temporal: set[str] | None = None) -> Callable[[dict[str, Any]], bool]:
    """A function telling whether a feature (or STAC item) matches `node`. Missing values never match."""
    if node is None:
        return lambda feature: True
    compiled = NativeEvaluator(use_getattr=False, allow_nested_attributes=False).evaluate(node)

    def matches(feature: dict[str, Any]) -> bool:
        try:
            return bool(compiled(evaluation_record(feature, temporal)))
        except (TypeError, AttributeError, ValueError):
            return False  # comparing a missing/other-typed value: no match, as in SQL

    return matches
