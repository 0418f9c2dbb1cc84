"""CQL2 for both faces: parsing (with the pygeofilter 0.4 workarounds), local evaluation, and pushdown.

Local evaluation uses pygeofilter's native evaluator on a feature's properties. Pushdown is always a
narrowing: an upstream receives the AND-conjuncts it can express, and geofed still evaluates the whole
filter on what comes back, so results stay exact whatever an upstream does with what it was sent.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pygeofilter
import shapely.geometry
from pygeofilter import ast, values
from pygeofilter.backends.native.evaluate import NativeEvaluator
from pygeofilter.parsers.cql2_json import parse as _parse_json
from pygeofilter.parsers.cql2_text import parse as _parse_text
from shapely.errors import GEOSException

from geofed.errors import InvalidParameter
from geofed.query.parse import parse_geometry
from geofed.settings import get_settings

_PYGEOFILTER_BUGGY = tuple(int(p) for p in pygeofilter.__version__.split(".")[:2]) <= (0, 4)


def _strip_accents(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# The only functions a filter may call. pygeofilter's native evaluator writes a Function's *name* into the
# Python source it `eval`s, with the builtins in scope: a filter `eval('…') = 1` would run code on the server.
# So every other name is refused (400) before evaluation, and the evaluator gets no builtins besides these.
FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "lower": _lower, "casei": _lower, "accenti": _strip_accents,
    "upper": lambda v: v.upper() if isinstance(v, str) else v,
}
_EVAL_GLOBALS: dict[str, Any] = {"__builtins__": {"getattr": getattr}, **FUNCTIONS}


class FilterTooComplex(InvalidParameter):
    """A filter over the configured size or nesting depth (refused before anything walks it recursively)."""


# ----------------------------------------------------------------- bounds (before any recursive walk)
def _limits() -> tuple[int, int]:
    settings = get_settings()
    return settings.filter_max_length, settings.filter_max_depth


def _too_complex(parameter: str, what: str) -> FilterTooComplex:
    length, depth = _limits()
    return FilterTooComplex(
        f"'{parameter}' is {what}: at most {length} characters and {depth} levels of nesting are accepted "
        "(a chain of n AND/OR counts n levels; use IN (...) for lists of values)", parameter=parameter)


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (objects and arrays), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def tree_depth(node: Any) -> int:
    """Depth of a parsed filter's expression tree, without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, ast.Node):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.get_sub_nodes())
        elif isinstance(item, list):
            stack.extend((child, level) for child in item)
    return deepest


def check_text_size(text: str, parameter: str = "filter") -> None:
    if len(text) > _limits()[0]:
        raise _too_complex(parameter, f"{len(text)} characters long")


def check_json_size(obj: Any, parameter: str = "filter") -> None:
    max_length, max_depth = _limits()
    if json_depth(obj) > 2 * max_depth + 8:  # each CQL2 JSON level is an object and its `args` array
        raise _too_complex(parameter, "nested too deeply")
    if len(orjson.dumps(obj)) > max_length:
        raise _too_complex(parameter, "too long")


def check_tree(node: Any, parameter: str = "filter") -> None:
    """Refuses a parsed filter nested deeper than `GEOFED_FILTER_MAX_DEPTH`, a function other than
    FUNCTIONS, and a geometry literal that is not a valid GeoJSON geometry (or has too many vertices)."""
    if node is None:
        return
    if tree_depth(node) > _limits()[1]:
        raise _too_complex(parameter, "nested too deeply")
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Function) and item.name.lower() not in FUNCTIONS:
            raise InvalidParameter(f"'{parameter}' calls an unknown function {item.name[:40]!r}; known: "
                                   f"{', '.join(sorted(FUNCTIONS))}", parameter=parameter)
        if isinstance(item, ast.Attribute) and not (isinstance(item.name, str) and item.name):
            # CQL2 JSON `{"property": {}}` / `{"property": ""}` parses, and breaks whoever reads the name
            raise InvalidParameter(f"'{parameter}' names a property that is not a non-empty string",
                                   parameter=parameter)
        if isinstance(item, values.Geometry):
            parse_geometry(item.geometry, parameter, max_vertices=get_settings().max_vertices)
        if isinstance(item, ast.Node):
            stack.extend(item.get_sub_nodes())
            stack.extend(v for v in vars(item).values() if isinstance(v, values.Geometry))
        elif isinstance(item, list):
            stack.extend(item)


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


def _fold_case_functions(node: Any) -> Any:
    """pygeofilter 0.4: `casei('lit')` / `accenti('lit')` stay Function nodes, and a LIKE whose pattern is one
    fails with TypeError. Folds them on literals (`casei('Ab%')` → 'ab%'); `casei(prop)` is evaluated with
    FUNCTIONS."""
    if isinstance(node, ast.Like) and isinstance(node.pattern, ast.Function) and node.pattern.name.lower() in (
            "lower", "casei"):
        object.__setattr__(node, "nocase", True)  # `prop LIKE casei('Ab%')`: a case-insensitive LIKE
    if isinstance(node, ast.Function) and node.name.lower() in FUNCTIONS and len(node.arguments) == 1 and (
            isinstance(node.arguments[0], str)):
        return FUNCTIONS[node.name.lower()](node.arguments[0])
    if isinstance(node, ast.Node):
        for name, value in list(vars(node).items()):
            if isinstance(value, ast.Node):
                object.__setattr__(node, name, _fold_case_functions(value))
            elif isinstance(value, list):
                object.__setattr__(node, name, [_fold_case_functions(v) for v in value])
    if isinstance(node, ast.Like) and not isinstance(node.pattern, str):
        raise InvalidParameter("the pattern of LIKE must be a string (or casei/accenti of one)", parameter="filter")
    return node


def _checked(node: Any, parameter: str) -> Any:
    if tree_depth(node) > _limits()[1]:  # bounded before the recursive workarounds below walk it
        raise _too_complex(parameter, "nested too deeply")
    if _PYGEOFILTER_BUGGY:
        node = _fold_case_functions(_fix_bbox_function(node))
    check_tree(node, parameter)
    return node


def parse_text(text: str, parameter: str = "filter") -> ast.Node:
    check_text_size(text, parameter)
    try:
        node = _parse_text(text)
    except RecursionError:
        raise _too_complex(parameter, "nested too deeply") from None
    except Exception as exc:
        raise InvalidParameter(f"invalid CQL2 text in '{parameter}': {exc}".split("\n")[0],
                               parameter=parameter) from None
    return _checked(node, parameter)


def parse_json(obj: Any, parameter: str = "filter") -> ast.Node:
    check_json_size(obj, parameter)
    try:
        node = _parse_json(_fix_json_bbox(obj) if _PYGEOFILTER_BUGGY else obj)
    except RecursionError:
        raise _too_complex(parameter, "nested too deeply") from None
    except InvalidParameter:
        raise
    except Exception as exc:
        raise InvalidParameter(f"invalid CQL2 JSON in '{parameter}': {exc}", parameter=parameter) from None
    return _checked(node, parameter)


def fix_parsed(node: Any) -> Any:
    """Checks and applies the workarounds to an AST parsed elsewhere (pygeoapi parses GET `filter=` itself)."""
    return None if node is None else _checked(node, "filter")


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


def literal(value: Any) -> Any:
    """A pygeofilter literal as a plain Python value (enum-like wrappers unwrapped)."""
    return value.value if hasattr(value, "value") and not isinstance(value, str | int | float) else value


def rename(node: Any, names: dict[str, str]) -> Any:
    """A copy of `node` whose attribute names are mapped through `names` (others kept): the one place where a
    filter in one face's vocabulary is read in another's."""
    if node is None or not names:
        return node
    if isinstance(node, ast.Attribute):
        return ast.Attribute(names.get(node.name, node.name))
    if isinstance(node, list):
        return [rename(v, names) for v in node]
    if isinstance(node, ast.Node):
        changes = {k: rename(v, names) for k, v in vars(node).items() if isinstance(v, ast.Node | list)}
        if not changes:
            return node
        clone = object.__new__(type(node))
        for key, value in {**vars(node), **changes}.items():
            object.__setattr__(clone, key, value)
        return clone
    return node


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
    check_tree(node)  # no function outside FUNCTIONS reaches the evaluator's `eval`, whoever parsed the filter
    try:
        compiled = NativeEvaluator(function_map=_EVAL_GLOBALS, use_getattr=False,
                                   allow_nested_attributes=False).evaluate(node)
    except (RecursionError, SyntaxError, MemoryError):
        raise _too_complex("filter", "nested too deeply") from None
    except (TypeError, ValueError, GEOSException) as exc:
        raise InvalidParameter(f"'filter' cannot be evaluated: {exc}", parameter="filter") from None

    def matches(feature: dict[str, Any]) -> bool:
        try:
            return bool(compiled(evaluation_record(feature, temporal)))
        except (TypeError, AttributeError, ValueError):
            return False  # comparing a missing/other-typed value: no match, as in SQL

    return matches
