"""The declarative pushdown table of a source, and the split of a query into upstream parameters.

Each collection declares (in `providers/<upstream>/sources.py`) which queryables and operators its upstream
evaluates and how they are encoded: `Param` for equality / IN lists, `Range` for numeric bounds, plus how bbox,
datetime, ids and sort are sent. `split()` turns a query into upstream parameters. Pushdown only ever narrows:
`Plan.exact` says whether the upstream applied *everything*; when it did not, the engine evaluates the whole
query locally on what comes back, so results stay exact whatever the upstream does with what it was sent.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pygeofilter import ast

from geofed import cql2
from geofed.errors import InvalidParameter
from geofed.query.model import FeatureQuery, SortBy
from geofed.query.parse import BBox, check_enum, geometry_bounds, typed

Params = list[tuple[str, str]]


@dataclass(frozen=True)
class Param:
    """`prop = v` (and `prop IN (...)`) go upstream as `param=v`: repeated keys (`many`) or one value."""

    param: str
    many: bool = True


@dataclass(frozen=True)
class Range:
    """Numeric comparisons go upstream as inclusive bounds `low`/`high`; `integer` bounds are rounded outwards
    (a superset: the comparison is then also evaluated locally)."""

    low: str
    high: str
    integer: bool = True


@dataclass(frozen=True)
class PushdownTable:
    properties: dict[str, Param | Range] = field(default_factory=dict)  # OGC-face queryable → encoding
    bbox: Callable[[BBox], Params] | None = None  # the bbox (or the intersects' bounds) as upstream parameters
    bbox_exact: bool = True  # the upstream tests intersection with the bbox itself
    datetime: Callable[[dt.datetime | None, dt.datetime | None], Params] | None = None
    datetime_exact: bool = True  # the upstream's interval test equals ours (overlap, inclusive ends)
    ids: Param | None = None  # how `ids` (feature ids) go upstream
    sorts: dict[str, dict[str, str]] = field(default_factory=dict)  # sortby field → {asc|desc: value}
    sort_param: str = "sort"
    default_sort: str | None = None  # sent when no sortby is asked (the upstream's own default otherwise)


@dataclass
class Plan:
    params: Params = field(default_factory=list)
    exact: bool = True  # the upstream applied every condition: its paging and count are ours
    empty: bool = False  # contradictory conditions: nothing can match
    sorted_upstream: bool = True  # the upstream orders as asked (or nothing was asked)


def combined_filter(q: FeatureQuery, fields: dict[str, dict[str, Any]]) -> ast.Node | None:
    """The query-string equalities (typed by their queryable) AND the CQL2 filter, as one AST."""
    node = q.filter
    for name, value in q.equals.items():
        if name not in fields:
            continue
        eq = ast.Equal(ast.Attribute(name), typed(value, fields[name], name))
        node = eq if node is None else ast.And(node, eq)
    return node


def validate(node: ast.Node | None, fields: dict[str, dict[str, Any]]) -> None:
    """Literals compared with enum or numeric queryables must fit them (400 naming the property)."""
    for part in cql2.conjuncts(node):
        comparison = cql2.simple_comparison(part)
        listed = cql2.in_list(part)
        pairs: list[tuple[str, Any]] = []
        if comparison is not None:
            pairs = [(comparison[0], cql2.literal(comparison[2]))]
        elif listed is not None:
            pairs = [(listed[0], cql2.literal(v)) for v in listed[1]]
        for name, value in pairs:
            schema = fields.get(name) or {}
            if schema.get("enum"):
                check_enum(value, schema["enum"], name)
            elif schema.get("type") in ("number", "integer"):
                _number(value, name)


def split(node: ast.Node | None, q: FeatureQuery, table: PushdownTable) -> Plan:
    """Upstream parameters for the AND-parts of `node` (in the table's vocabulary) and for q's bbox, datetime,
    ids and sort; `exact` is False as soon as anything is left for local evaluation."""
    plan = Plan()
    lists: dict[str, set[str]] = {}
    singles: dict[str, str] = {}
    bounds: dict[str, list[float | None]] = {}
    for part in cql2.conjuncts(node):
        comparison = cql2.simple_comparison(part)
        listed = cql2.in_list(part)
        rule = table.properties.get((comparison or listed or ("",))[0])
        if comparison is not None and isinstance(rule, Param) and comparison[1] == "=":
            _add(plan, lists, singles, rule, [_text(cql2.literal(comparison[2]))])
        elif listed is not None and isinstance(rule, Param) and (rule.many or len(listed[1]) == 1):
            _add(plan, lists, singles, rule, [_text(cql2.literal(v)) for v in listed[1]])
        elif comparison is not None and isinstance(rule, Range) and comparison[1] != "<>":
            _bound(plan, bounds, rule, comparison[0], comparison[1], _number(cql2.literal(comparison[2]),
                                                                                comparison[0]))
        else:
            plan.exact = False
    if q.ids:
        # through the same lists as the properties: `ids` AND a property on the same upstream parameter intersect
        if table.ids is None:
            plan.exact = False
        else:
            _add(plan, lists, singles, table.ids, [str(i) for i in q.ids])
    plan.params += [(k, v) for k, vs in lists.items() for v in sorted(vs)] + list(singles.items())
    for name, (low, high) in bounds.items():
        rule = table.properties[name]
        assert isinstance(rule, Range)
        if low is not None:
            plan.params.append((rule.low, _num_text(low)))
        if high is not None:
            plan.params.append((rule.high, _num_text(high)))
        plan.empty |= low is not None and high is not None and low > high
    _space_time(plan, q, table)
    _sort(plan, q.sortby, table)
    return plan


def _space_time(plan: Plan, q: FeatureQuery, table: PushdownTable) -> None:
    area = q.bbox or (geometry_bounds(q.intersects) if q.intersects else None)
    if area is not None:
        if table.bbox is None:
            plan.exact = False
        else:
            plan.params += table.bbox(area)
            plan.exact &= table.bbox_exact and not q.intersects  # an intersects is only narrowed by its bounds
    if q.has_time:
        if table.datetime is None:
            plan.exact = False
        else:
            plan.params += table.datetime(q.start, q.end)
            plan.exact &= table.datetime_exact


def _sort(plan: Plan, sortby: SortBy, table: PushdownTable) -> None:
    if not sortby:
        if table.default_sort:
            plan.params.append((table.sort_param, table.default_sort))
        return
    name, direction = sortby[0]
    native = table.sorts.get(name, {}).get(direction) if len(sortby) == 1 else None
    if native is None:
        plan.sorted_upstream = False
        if table.default_sort:
            plan.params.append((table.sort_param, table.default_sort))
    else:
        plan.params.append((table.sort_param, native))


def _add(plan: Plan, lists: dict[str, set[str]], singles: dict[str, str], rule: Param, values: list[str]) -> None:
    if rule.many:
        current = lists.get(rule.param)
        lists[rule.param] = set(values) if current is None else current & set(values)
        plan.empty |= not lists[rule.param]
    elif len(values) == 1:
        plan.empty |= rule.param in singles and singles[rule.param] != values[0]
        singles[rule.param] = values[0]
    else:
        plan.exact = False


def _bound(plan: Plan, bounds: dict[str, list[float | None]], rule: Range, name: str, op: str,
           number: float) -> None:
    low, high = bounds.setdefault(name, [None, None])
    lo = math.floor(number) if rule.integer else number
    hi = math.ceil(number) if rule.integer else number
    if op in (">", ">=", "="):
        bounds[name][0] = lo if low is None else max(low, lo)
    if op in ("<", "<=", "="):
        bounds[name][1] = hi if high is None else min(high, hi)
    # inclusive upstream bounds: strict comparisons, and rounded ones, are also evaluated locally
    if op in ("<", ">") or (rule.integer and not float(number).is_integer()) or (op == "=" and rule.integer):
        plan.exact = False


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"'{name}' must be compared with a number, got {value!r}", parameter=name)
    return float(value)


def _num_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
