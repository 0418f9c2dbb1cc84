"""What a federated filter implies for one collection's lane, decided before any item is read.

Members that cannot evaluate CQL2 (and the engine, for conditions outside a collection's pushdown table) would
otherwise read a whole collection to find that nothing matches — e.g. `collection = 'a'` searched over every
collection, or `id = 'x'` / `datetime >= T` in a filter rather than in `ids` / `datetime`. Two things follow from
the filter alone, and both only narrow (the whole filter is still evaluated on every item):
- `decide(node, collection)`: the filter's truth when it depends on the item's collection only (False → the lane
  is skipped without an upstream call);
- `implied(node)`: `ids` and a datetime interval that every match must satisfy (top-level AND parts on `id` and
  `datetime`), added to what the member is asked.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from typing import Any

from pygeofilter import ast

from geofed import cql2
from geofed.query.parse import instant

COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Equal: operator.eq, ast.NotEqual: operator.ne, ast.LessThan: operator.lt, ast.LessEqual: operator.le,
    ast.GreaterThan: operator.gt, ast.GreaterEqual: operator.ge,
}


def decide(node: Any, collection_id: str) -> bool | None:
    """True or False when `node` holds or fails for every item of `collection_id`; None when it depends on more."""
    if isinstance(node, ast.And | ast.Or):
        left, right = decide(node.lhs, collection_id), decide(node.rhs, collection_id)
        if isinstance(node, ast.And):
            return False if False in (left, right) else (True if left is right is True else None)
        return True if True in (left, right) else (False if left is right is False else None)
    if isinstance(node, ast.Not):
        inner = decide(node.sub_node, collection_id)
        return None if inner is None else not inner
    if isinstance(node, ast.In) and _is(node.lhs, "collection"):
        values = [cql2.literal(v) for v in node.sub_nodes]
        if all(isinstance(v, str) for v in values):
            return (collection_id in values) != bool(node.not_)
        return None
    compare = COMPARE.get(type(node))
    if compare is not None:
        simple = cql2.simple_comparison(node)
        if simple is not None and simple[0] == "collection" and isinstance(cql2.literal(simple[2]), str):
            flipped = not _is(node.lhs, "collection")  # `'x' < collection` reads as `collection > 'x'`
            value = cql2.literal(simple[2])
            return compare(value, collection_id) if flipped else compare(collection_id, value)
    return None


def implied(node: Any) -> tuple[set[str] | None, dt.datetime | None, dt.datetime | None]:
    """(ids, start, end) that every match of `node` satisfies: from its top-level AND parts on `id` and on
    `datetime` (a strict bound is widened to an inclusive one: narrowing only)."""
    ids: set[str] | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    for part in cql2.conjuncts(node):
        listed = cql2.in_list(part)
        simple = cql2.simple_comparison(part)
        if listed is not None and listed[0] == "id":
            found = {str(cql2.literal(v)) for v in listed[1]}
            ids = found if ids is None else ids & found
        elif simple is not None and simple[0] == "id" and simple[1] == "=":
            ids = {str(cql2.literal(simple[2]))} if ids is None else ids & {str(cql2.literal(simple[2]))}
        elif simple is not None and simple[0] == "datetime" and (moment := _moment(simple[2])) is not None:
            if simple[1] in (">", ">=", "="):
                start = moment if start is None else max(start, moment)
            if simple[1] in ("<", "<=", "="):
                end = moment if end is None else min(end, moment)
    return ids, start, end


def _is(node: Any, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.name == name


def _moment(value: Any) -> dt.datetime | None:
    value = cql2.literal(value)
    if isinstance(value, dt.datetime | dt.date):
        return instant(value)
    return instant(value) if isinstance(value, str) else None
