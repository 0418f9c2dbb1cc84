"""What a CarbonMapper collection hands to the upstream, and exact paging over the rest.

A `FeatureQuery` (query-string equalities + CQL2 filter + bbox/datetime/ids) is split into upstream
parameters (pushed down) and a local predicate. Pushdown only narrows: when every part was expressed
exactly, the upstream's offset is ours and `total_count` is `numberMatched`; otherwise geofed evaluates the
whole filter locally and pages with `geofed.query.exact_page`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import shapely.geometry
from pygeofilter import ast

from geofed import cql2
from geofed.errors import InvalidParameter
from geofed.query import FeatureQuery, RecordPage, check_enum, exact_page, parse_number

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Rule:
    """How one queryable property reaches the upstream: `param` takes one value (`many=False`) or repeated
    keys (`many=True`); `enum` values are validated (400 naming the allowed values)."""

    param: str
    many: bool = True
    enum: tuple[str, ...] | None = None


@dataclass
class Pushdown:
    lists: dict[str, set[str]] = field(default_factory=dict)
    singles: dict[str, str] = field(default_factory=dict)
    extra: list[tuple[str, str]] = field(default_factory=list)
    exact: bool = True  # every condition went upstream as is
    empty: bool = False  # contradictory conditions: nothing can match

    def add(self, rule: Rule, values: list[str]) -> None:
        if rule.many:
            current = self.lists.get(rule.param)
            self.lists[rule.param] = set(values) if current is None else current & set(values)
            self.empty |= not self.lists[rule.param]
        elif len(values) == 1:
            if rule.param in self.singles and self.singles[rule.param] != values[0]:
                self.empty = True
            self.singles[rule.param] = values[0]
        else:
            self.exact = False

    def params(self) -> list[tuple[str, str]]:
        out = [(k, v) for k, vs in self.lists.items() for v in sorted(vs)]
        out += list(self.singles.items())
        return out + self.extra


def typed(value: Any, schema: dict[str, Any], name: str) -> Any:
    """A query-string value converted to its queryable's type (400 when it does not parse)."""
    kind = schema.get("type")
    if kind in ("number", "integer"):
        number = parse_number(value, name)
        return int(number) if kind == "integer" and number.is_integer() else number
    if kind == "boolean":
        if str(value).lower() not in ("true", "false"):
            raise InvalidParameter(f"'{name}' must be true or false, got {value!r}", parameter=name)
        return str(value).lower() == "true"
    return str(value)


def combined_filter(q: FeatureQuery, fields: dict[str, dict[str, Any]]) -> ast.Node | None:
    """The query-string equalities (typed) AND the CQL2 filter, as one AST."""
    node = q.filter
    for name, value in q.equals.items():
        if name not in fields:
            continue
        eq = ast.Equal(ast.Attribute(name), typed(value, fields[name], name))
        node = eq if node is None else ast.And(node, eq)
    return node


def _literal(value: Any) -> Any:
    return value.value if hasattr(value, "value") and not isinstance(value, str | int | float) else value


def split(
    node: ast.Node | None,
    rules: dict[str, Rule],
    ranges: dict[str, tuple[str, str]],
    fields: dict[str, dict[str, Any]],
) -> Pushdown:
    """Pushes the AND-parts of `node` that `rules`/`ranges` can express; validates enum and number values."""
    pd = Pushdown()
    bounds: dict[str, list[float | None]] = {}
    for part in cql2.conjuncts(node):
        _validate(part, fields)
        comparison = cql2.simple_comparison(part)
        listed = cql2.in_list(part)
        if comparison is not None:
            name, op, value = comparison
            value = _literal(value)
            if name in rules and op == "=":
                pd.add(rules[name], [str(value)])
                continue
            if name in ranges and op in ("<", "<=", ">", ">=", "="):
                number = _number(value, name)
                low, high = bounds.setdefault(name, [None, None])
                # the upstream bounds are inclusive integers: round outwards (a superset) and, unless
                # that was exact, keep evaluating locally
                if op in (">", ">=", "="):
                    bounds[name][0] = max(low, math.floor(number)) if low is not None else math.floor(number)
                if op in ("<", "<=", "="):
                    bounds[name][1] = min(high, math.ceil(number)) if high is not None else math.ceil(number)
                if op in ("<", ">", "=") or not float(number).is_integer():
                    pd.exact = False
                continue
        elif listed is not None and listed[0] in rules:
            rule = rules[listed[0]]
            values = [str(_literal(v)) for v in listed[1]]
            if rule.many or len(values) == 1:
                pd.add(rule, values)
                continue
        pd.exact = False
    for name, (low, high) in bounds.items():
        low_param, high_param = ranges[name]
        if low is not None:
            pd.extra.append((low_param, str(int(low))))
        if high is not None:
            pd.extra.append((high_param, str(int(high))))
        if low is not None and high is not None and low > high:
            pd.empty = True
    return pd


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"'{name}' must be compared with a number, got {value!r}", parameter=name)
    return float(value)


def _validate(part: ast.Node, fields: dict[str, dict[str, Any]]) -> None:
    comparison = cql2.simple_comparison(part)
    listed = cql2.in_list(part)
    pairs: list[tuple[str, Any]] = []
    if comparison is not None:
        pairs = [(comparison[0], _literal(comparison[2]))]
    elif listed is not None:
        pairs = [(listed[0], _literal(v)) for v in listed[1]]
    for name, value in pairs:
        schema = fields.get(name) or {}
        if schema.get("enum"):
            check_enum(value, schema["enum"], name)
        elif schema.get("type") in ("number", "integer"):
            _number(value, name)


def local_predicate(
    node: ast.Node | None, q: FeatureQuery, temporal: set[str]
) -> Callable[[dict[str, Any]], bool]:
    """The whole filter plus `intersects` (never pushed down) on a mapped feature."""
    matches = cql2.predicate(node, temporal)
    area = shapely.geometry.shape(q.intersects) if q.intersects else None
    ids = set(q.ids) if q.ids else None

    def keep(feature: dict[str, Any]) -> bool:
        if ids is not None and feature.get("id") not in ids:
            return False
        if area is not None:
            geometry = feature.get("geometry")
            if not geometry or not area.intersects(shapely.geometry.shape(geometry)):
                return False
        return matches(feature)

    return keep


Fetch = Callable[[int, int], Awaitable[tuple[list[dict[str, Any]], int | None]]]


async def page(
    fetch: Fetch, pd: Pushdown, q: FeatureQuery, keep: Callable[[dict[str, Any]], bool], exact: bool
) -> RecordPage:
    """One page of records. `fetch(offset, limit)` → (records, upstream total or None)."""
    if pd.empty:
        return RecordPage([], 0, False)
    if exact:
        if q.hits_only:
            _, total = await fetch(0, 1)
            return RecordPage([], total, False)
        records: list[dict[str, Any]] = []
        offset, total = q.offset, None
        while len(records) < q.limit:
            batch, total = await fetch(offset, min(MAX_LIMIT, q.limit - len(records)))
            records += batch
            offset += len(batch)
            if not batch or (total is not None and offset >= total):
                break
        more = total > q.offset + len(records) if total is not None else len(records) == q.limit
        return RecordPage(records, total, more)

    async def scan(offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        batch, total = await fetch(offset, limit)
        return batch, bool(batch) and (offset + len(batch) < total if total is not None else len(batch) == limit)

    if q.hits_only:
        everything = await exact_page(scan, keep, 0, 10**9, batch=MAX_LIMIT)
        return RecordPage([], len(everything.records), False)
    return await exact_page(scan, keep, q.offset, q.limit, batch=MAX_LIMIT)


def rfc3339_interval(q: FeatureQuery) -> str | None:
    if not q.has_time:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    start = q.start.astimezone(dt.UTC).strftime(fmt) if q.start else ".."
    end = q.end.astimezone(dt.UTC).strftime(fmt) if q.end else ".."
    return f"{start}/{end}"


def sort_records(records: list[dict[str, Any]], sortby: list[tuple[str, str]],
                 value: Callable[[dict[str, Any], str], Any]) -> list[dict[str, Any]]:
    """Stable multi-key sort for collections paged locally; missing values last in either direction."""
    out = list(records)
    for name, direction in reversed(sortby):
        present = [r for r in out if value(r, name) is not None]
        missing = [r for r in out if value(r, name) is None]
        present.sort(key=lambda r, n=name: value(r, n), reverse=direction == "desc")
        out = present + missing
    return out


def geometry_bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    w, s, e, n = shapely.geometry.shape(geometry).bounds
    return (w, s, e, n)
