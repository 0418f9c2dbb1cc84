"""One federated query, whatever route and method it came from, and what the bridge evaluates locally.

`FederatedQuery.from_request()` normalizes the GET query string or the POST body (already parsed by
stac-fastapi's request models, built from the extension list) into one object, validating what the
models leave loose (bbox order, intersects, CQL2) with 400s that name the parameter. `matches()` checks
an item against the whole query, so members may push down only part of it; `sort_key()` is the one
merge order: `sortby` when given, else datetime descending, then collection and id.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from geofed import cql2
from geofed.errors import InvalidParameter
from geofed.query import BBox, parse_bbox, parse_geometry, parse_interval
from geofed.query.evaluate import ITEM_TIME, matcher
from geofed.query.order import SortKey, field_name
from stac_bridge.member import SearchParams, SortBy
from stac_bridge.narrow import decide, implied

DEFAULT_SORT: SortBy = [("datetime", "desc"), ("collection", "asc"), ("id", "asc")]
DEFAULT_FIELDS = {"type", "stac_version", "stac_extensions", "id", "bbox", "geometry", "links", "assets",
                  "collection", "properties.datetime"}
TEMPORAL = {"datetime", "start_datetime", "end_datetime", "created", "updated"}


@dataclass
class FederatedQuery:
    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: BBox | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    filter: Any | None = None
    filter_raw: Any | None = None
    filter_lang: str | None = None
    sortby: SortBy = field(default_factory=list)
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    limit: int = 10
    token: str | None = None
    strict: bool = False

    @classmethod
    def from_request(cls, request: Any = None, **kwargs: Any) -> FederatedQuery:
        """From a POST model (`request`) or the GET kwargs stac-fastapi passes to the client."""
        raw = request.model_dump(by_alias=False, exclude_none=True) if request is not None else dict(kwargs)
        query = cls(limit=int(raw.get("limit") or 10), token=raw.get("token") or None,
                    strict=bool(raw.get("strict")))
        query.collections = _str_list(raw.get("collections"), "collections")
        query.ids = _str_list(raw.get("ids"), "ids")
        if raw.get("bbox") is not None and raw.get("intersects") is not None:
            raise InvalidParameter("'bbox' and 'intersects' are mutually exclusive; send one of them",
                                   parameter="bbox")
        query.bbox = parse_bbox(list(raw["bbox"]) if raw.get("bbox") is not None else None)
        query.intersects = parse_geometry(raw.get("intersects"), "intersects")
        query.datetime = raw.get("datetime") or None
        query.start, query.end = parse_interval(query.datetime)
        query._set_filter(raw.get("filter_expr"), raw.get("filter_lang"))
        query.sortby = _sortby(raw.get("sortby"))
        query.include, query.exclude = _fields(raw.get("fields"))
        return query

    def _set_filter(self, expr: Any, lang: str | None) -> None:
        if expr in (None, "", {}):
            return
        if isinstance(expr, str) and lang == "cql2-json":
            try:
                expr = orjson.loads(expr)
            except orjson.JSONDecodeError:
                raise InvalidParameter("'filter' is not valid JSON (filter-lang=cql2-json)",
                                       parameter="filter") from None
        if isinstance(expr, str):
            self.filter, self.filter_lang = cql2.parse_text(expr), "cql2-text"
        else:
            self.filter, self.filter_lang = cql2.parse_json(expr), "cql2-json"
        self.filter_raw = expr

    # ------------------------------------------------------------ derived
    @property
    def order(self) -> SortBy:
        return [*self.sortby, ("collection", "asc"), ("id", "asc")] if self.sortby else DEFAULT_SORT

    def normalized(self) -> dict[str, Any]:
        """Everything that decides which items come in which order (not limit, fields, strict or token)."""
        return {
            "collections": sorted(self.collections) if self.collections else None, "ids": self.ids,
            "bbox": self.bbox, "intersects": self.intersects, "datetime": self.datetime,
            "filter": self.filter_raw, "sortby": self.sortby,
        }

    @functools.cached_property
    def narrowed(self) -> tuple[list[str] | None, dt.datetime | None, dt.datetime | None]:
        """`ids`, start and end, tightened by what the filter implies (`stac_bridge.narrow`)."""
        ids, start, end = implied(self.filter)
        if ids is not None:
            ids_list = sorted(ids) if self.ids is None else [i for i in self.ids if i in ids]
        else:
            ids_list = self.ids
        if start is not None and (self.start is None or start > self.start):
            start_at = start
        else:
            start_at = self.start
        end_at = end if end is not None and (self.end is None or end < self.end) else self.end
        return ids_list, start_at, end_at

    def impossible(self, collection_id: str) -> bool:
        """True when no item of this collection can match (decided from the query alone, nothing read)."""
        ids, start, end = self.narrowed
        if ids == [] or (start is not None and end is not None and start > end):
            return True
        return self.filter is not None and decide(self.filter, collection_id) is False

    def member_params(self, collections: list[str], limit: int) -> SearchParams:
        ids, start, end = self.narrowed
        return SearchParams(
            collections=collections, limit=limit, ids=ids, bbox=self.bbox, intersects=self.intersects,
            start=start, end=end, filter=self.filter, filter_raw=self.filter_raw,
            filter_lang=self.filter_lang, sortby=list(self.sortby),
        )

    @functools.cached_property
    def matches(self) -> Callable[[dict[str, Any]], bool]:
        """Whether an item satisfies the whole query (members may have pushed down only part of it): the
        engine's local evaluation, on the item, in the STAC vocabulary."""
        return matcher(ids=self.ids, collections=self.collections, bbox=self.bbox, intersects=self.intersects,
                       start=self.start, end=self.end, time_fields=ITEM_TIME, node=self.filter, temporal=TEMPORAL)

    def project(self, item: dict[str, Any]) -> dict[str, Any]:
        """The fields extension: `include` (added to the default fields) and `exclude`, dotted paths."""
        if not self.include and not self.exclude:
            return item
        if self.include:
            out: dict[str, Any] = {}
            for path in DEFAULT_FIELDS | self.include:
                _copy_path(item, out, path.split("."))
        else:
            out = orjson.loads(orjson.dumps(item))
        for path in self.exclude - (self.include & self.exclude):
            _drop_path(out, path.split("."))
        return out

    def sort_key(self, item: dict[str, Any]) -> SortKey:
        return SortKey.of(item, self.order)


# ------------------------------------------------------------------ helpers
def _copy_path(source: dict[str, Any], target: dict[str, Any], path: list[str]) -> None:
    head, rest = path[0], path[1:]
    if head not in source:
        return
    if not rest:
        target[head] = source[head]
    elif isinstance(source[head], dict):
        _copy_path(source[head], target.setdefault(head, {}), rest)


def _drop_path(target: dict[str, Any], path: list[str]) -> None:
    head, rest = path[0], path[1:]
    if not rest:
        target.pop(head, None)
    elif isinstance(target.get(head), dict):
        _drop_path(target[head], rest)


def _str_list(value: Any, parameter: str) -> list[str] | None:
    if value is None or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(v).strip() for v in items if str(v).strip()]
    if not items:
        raise InvalidParameter(f"'{parameter}' is empty", parameter=parameter)
    return items


def _sortby(value: Any) -> SortBy:
    out: SortBy = []
    for entry in value or ():
        if isinstance(entry, str):
            text = entry.strip()
            direction: Literal["asc", "desc"] = "desc" if text.startswith("-") else "asc"
            name = text.lstrip("+- ")
        else:
            name = str(entry.get("field", ""))
            direction = "desc" if str(entry.get("direction", "asc")).lower().endswith("desc") else "asc"
        if not name:
            raise InvalidParameter("'sortby' has an empty field name", parameter="sortby")
        out.append((field_name(name), direction))
    return out


def _fields(value: Any) -> tuple[set[str], set[str]]:
    if not value:
        return set(), set()
    if isinstance(value, dict):
        return set(value.get("include") or ()), set(value.get("exclude") or ())
    include = {v.lstrip("+").strip() for v in value if v.strip() and not v.strip().startswith("-")}
    exclude = {v.strip()[1:] for v in value if v.strip().startswith("-")}
    return include, exclude
