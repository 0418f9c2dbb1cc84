"""The one multi-key order of both faces: a direction per key, missing values last in either direction."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from geofed.query.model import SortBy
from geofed.query.parse import instant

TOP_LEVEL = {"id", "collection"}


def field_name(name: str) -> str:
    """`properties.eo:cloud_cover` and `eo:cloud_cover` are one sort/filter field."""
    return name[len("properties."):] if name.startswith("properties.") else name


def sort_value(obj: dict[str, Any], name: str) -> Any:
    """A feature's or item's value for a sort key; date-times compare as instants."""
    if name in TOP_LEVEL:
        return obj.get(name)
    props = obj.get("properties") or {}
    value = props.get(name)
    if name == "datetime" and value is None:
        value = props.get("start_datetime")
    if isinstance(value, str):
        moment = instant(value)
        if moment is not None and len(value) >= 19:
            return moment.timestamp()
    return value


@functools.total_ordering
class SortKey:
    """Multi-key order with a direction per key; missing values sort last in either direction."""

    __slots__ = ("order", "values")

    def __init__(self, values: tuple[Any, ...], order: SortBy) -> None:
        self.values = values
        self.order = order

    @classmethod
    def of(cls, obj: dict[str, Any], order: SortBy) -> SortKey:
        return cls(tuple(sort_value(obj, name) for name, _ in order), order)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SortKey) and self.values == other.values

    def __lt__(self, other: SortKey) -> bool:
        for a, b, (_, direction) in zip(self.values, other.values, self.order, strict=True):
            if a == b:
                continue
            if a is None or b is None:
                return b is None
            try:
                less = a < b
            except TypeError:
                less = str(a) < str(b)
            return less if direction == "asc" else not less
        return False

    def lead(self) -> SortKey:
        """The key of the first sort field alone (what a member that sorts on the lead field orders by)."""
        return SortKey(self.values[:1], self.order[:1])

    __hash__ = None  # type: ignore[assignment]


def sort_objects(objects: list[Any], order: SortBy,
                 view: Callable[[Any], dict[str, Any]] = lambda o: o) -> list[Any]:
    """Stable sort of features/items (or of records seen through `view`, e.g. a record → feature mapping)."""
    return sorted(objects, key=lambda o: SortKey.of(view(o), order))
