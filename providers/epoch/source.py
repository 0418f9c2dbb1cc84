"""`epoch-plots`: Epoch's plots as a feature source, streamed and paged by skipping (see `paging`).

Pushed down to Epoch: the collection (`filename`, when the geofed collection is bound to one), the monitoring
window from `datetime` (`monitoring_start`/`monitoring_end`, widened to whole days), every equality on a text
property (Epoch filters on any column name), and `limit`. Everything is evaluated again here on what comes back
(bbox/intersects, the exact datetime overlap, numeric equalities, the whole CQL2 filter), so results stay exact
whatever Epoch does with a filter. When only plot fields are asked for (`properties=` naming none of the
statistics, or a count), the query uses `plots_only=true`, Epoch's cheap path.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import shapely.geometry

from geofed import cql2, errors
from geofed.http.loop import run_async
from geofed.query import FeatureQuery, RecordPage
from providers.epoch import records
from providers.epoch.client import EpochClient, flag
from providers.epoch.paging import Cursor, CursorCache

# Module level: pygeoapi builds a provider (and with it a source) per request. Only used on the upstream loop.
CURSORS = CursorCache()


def _typed(name: str, value: Any) -> Any:
    """A query-string value as the property's type (pygeoapi hands every value over as text)."""
    if name in records.NUMBER_FIELDS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise errors.InvalidParameter(f"'{name}' must be a number, got {value!r}", parameter=name) from None
    return value


class PlotSource:
    upstream = "epoch"
    title = "Epoch plots: biomass and land-use-change emissions"
    description = (
        "Plot-level biomass (AGB, BGB, SOC) and land-use-change emissions from Epoch's SCo2 API: one polygon per "
        "monitored plot, with its monitoring window, yearly series and upload metadata."
    )

    def __init__(self, collection_id: str = records.COLLECTION_ID, filename: str | None = None,
                 datetime_pushdown: str = "overlap", stream_cache_size: int = 8, stream_cache_ttl: float = 60.0,
                 min_upstream_limit: int = 1000, max_scan: int = 200_000, get_limit: int = 2,
                 title: str | None = None, description: str | None = None) -> None:
        self.collection_id = collection_id
        self.filename = filename  # the Epoch collection this geofed collection is bound to; None = all
        # How Epoch selects plots by monitoring_start/end is UNSPEC. "overlap" assumes it keeps every plot whose
        # window overlaps the dates (then pushing down only narrows); "none" filters here only.
        if datetime_pushdown not in ("overlap", "none"):
            raise ValueError(f"epoch option datetime_pushdown must be overlap or none, got {datetime_pushdown!r}")
        self.datetime_pushdown = datetime_pushdown
        self.min_upstream_limit, self.max_scan, self.get_limit = min_upstream_limit, max_scan, get_limit
        self.title = title or self.title
        self.description = description or self.description
        CURSORS.configure(stream_cache_size, stream_cache_ttl)

    # ------------------------------------------------------------------ FeatureSource
    def fields(self) -> dict[str, dict[str, Any]]:
        return {name: dict(schema) for name, schema in records.PROPERTIES.items()}

    async def query(self, q: FeatureQuery) -> RecordPage:
        return await run_async(self._query(q))

    async def get(self, identifier: str) -> dict[str, Any]:
        return await run_async(self._get(identifier))

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_feature(record)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_item(record, self.collection_id)

    def stac_collection(self) -> dict[str, Any]:
        return {
            "type": "Collection", "stac_version": "1.1.0", "id": self.collection_id, "title": self.title,
            "description": self.description, "license": "other",
            "keywords": ["biomass", "land use change", "emissions", "plots", "Epoch"],
            "providers": [{"name": "Epoch", "roles": ["producer", "processor", "host"],
                           "url": "https://epoch-sco2-api.com"}],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                       "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]}},
            "item_assets": {"thumbnail": {"type": "image/png", "roles": ["thumbnail", "overview"]},
                            "thumbnail_lc": {"type": "image/png", "roles": ["thumbnail", "overview"]}},
            "links": [],
        }

    # ------------------------------------------------------------------ planning
    def _plan(self, q: FeatureQuery, count: bool = False) -> tuple[dict[str, str], Callable[[dict[str, Any]], bool]
                                                                   | None]:
        """(upstream parameters without `limit`, local check or None when the upstream did all of it)."""
        params: dict[str, str] = {}
        if self.filename:
            params["filename"] = self.filename
        equals = {name: _typed(name, value) for name, value in q.equals.items()}
        for name, value in equals.items():
            if name in records.STRING_FIELDS:
                params.setdefault(name, str(value))
        for node in cql2.conjuncts(q.filter):
            simple = cql2.simple_comparison(node)
            if simple and simple[1] == "=" and simple[0] in records.STRING_FIELDS and isinstance(simple[2], str):
                params.setdefault(simple[0], simple[2])
        if q.ids and len(q.ids) == 1:
            params.setdefault("uuid", q.ids[0])
        if q.has_time and self.datetime_pushdown == "overlap":
            if q.start is not None:
                params["monitoring_start"] = q.start.astimezone(dt.UTC).date().isoformat()
            if q.end is not None and q.end.year < 9999:  # widened to whole days: only ever a superset
                params["monitoring_end"] = (q.end.astimezone(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
        # text equalities were pushed down: with plots_only they are Epoch's to apply (its records lack them)
        wanted = set(q.properties_wanted or []) | (set(equals) - records.STRING_FIELDS) | cql2.attributes(q.filter)
        cheap = (count or q.properties_wanted is not None) and not q.has_time and not q.sortby
        if cheap and wanted <= records.PLOTS_ONLY_FIELDS | {"id", "geometry"}:
            params["plots_only"] = "true"
            equals = {k: v for k, v in equals.items() if k in records.PLOTS_ONLY_FIELDS}
        checks = self._checks(q, equals)
        if not checks:
            return params, None

        def keep(record: dict[str, Any]) -> bool:
            return all(check(record) for check in checks)

        return params, keep

    def _checks(self, q: FeatureQuery, equals: dict[str, Any]) -> list[Callable[[dict[str, Any]], bool]]:
        checks: list[Callable[[dict[str, Any]], bool]] = []
        if equals:
            checks.append(lambda r: all(r["properties"].get(k) == v for k, v in equals.items()))
        if q.ids:
            ids = set(q.ids)
            checks.append(lambda r: r["properties"].get("uuid") in ids)
        area = shapely.geometry.box(*q.bbox) if q.bbox else None
        if q.intersects:
            shape = shapely.geometry.shape(q.intersects)
            area = shape if area is None else area.intersection(shape)
        if area is not None:
            shapely.prepare(area)
            checks.append(lambda r: bool(r.get("geometry")) and area.intersects(shapely.geometry.shape(r["geometry"])))
        if q.has_time:
            start, end = q.start, q.end

            def overlaps(record: dict[str, Any]) -> bool:
                first, last = records.window(record)
                if first is None or last is None:
                    return False
                return (end is None or first <= end) and (start is None or last >= start)

            checks.append(overlaps)
        if q.filter is not None:
            matches = cql2.predicate(q.filter, set(records.TEMPORAL_FIELDS))
            checks.append(lambda r: matches(records.to_feature(r)))
        return checks

    def _opener(self, params: dict[str, str]) -> Callable[[int], AsyncIterator[bytes]]:
        client = EpochClient()
        return lambda limit: client.lines({**params, "limit": str(limit), "aggregate": flag(False)})

    def _cursor(self, params: dict[str, str], keep: Callable[[dict[str, Any]], bool] | None, min_limit: int
                ) -> Callable[[], Cursor]:
        return lambda: Cursor(self._opener(params), records.parse_line, keep, min_limit, self.max_scan)

    # ------------------------------------------------------------------ queries
    async def _query(self, q: FeatureQuery) -> RecordPage:
        if q.sortby:
            return await self._sorted(q)
        params, keep = self._plan(q, count=q.hits_only)
        # the key is everything that shapes the stream; the local check is part of it (it decides the indexes)
        key = (self.collection_id, tuple(sorted(params.items())), repr((q.bbox, q.intersects, q.start, q.end,
                                                                       sorted(q.equals.items()), q.ids, q.filter)))
        if q.hits_only:
            total = await CURSORS.count(("count", *key), self._cursor(params, keep, self.max_scan))
            return RecordPage([], total, False)
        need = q.offset + q.limit + 1
        min_limit = max(self.min_upstream_limit, 2 * need if keep is None else 4 * need)
        page = await CURSORS.page(key, self._cursor(params, keep, min_limit), q.offset, q.limit)
        return RecordPage([records.parse_line(line) for line in page.lines], page.total, page.more)

    async def _sorted(self, q: FeatureQuery) -> RecordPage:
        """Epoch cannot sort: read every match (up to `max_scan` plots, one stream, not cached) keeping only
        the first offset + limit + 1 in memory."""
        for name, _ in q.sortby:
            if name not in records.PROPERTIES:
                raise errors.InvalidParameter(f"cannot sort by unknown property '{name}'", parameter="sortby")
        params, keep = self._plan(q)

        def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
            for name, order in q.sortby:
                x, y = a["properties"].get(name), b["properties"].get(name)
                if x == y:
                    continue
                if x is None or y is None:  # missing values last, whatever the order
                    return 1 if x is None else -1
                return (-1 if x < y else 1) * (1 if order == "asc" else -1)
            return 0

        sort_key = functools.cmp_to_key(compare)
        keep_n = q.offset + q.limit + 1
        best: list[dict[str, Any]] = []
        total = read = 0
        async with aclosing(self._opener(params)(self.max_scan)) as lines:
            async for line in lines:
                read += 1
                record = records.parse_line(line)
                if keep is None or keep(record):
                    total += 1
                    best.append(record)
                    if len(best) > 2 * keep_n:  # bounded memory while reading
                        best = heapq.nsmallest(keep_n, best, key=sort_key)
        if read >= self.max_scan:
            raise errors.InvalidParameter(
                f"sorting needs every match read, and this query has more than {self.max_scan} Epoch plots; "
                "narrow it", parameter="sortby")
        page = heapq.nsmallest(keep_n, best, key=sort_key)[q.offset:q.offset + q.limit]
        return RecordPage(page, total, total > q.offset + len(page))

    async def _get(self, identifier: str) -> dict[str, Any]:
        params = {"uuid": identifier, "limit": str(self.get_limit), "aggregate": flag(False)}
        if self.filename:
            params["filename"] = self.filename
        async with aclosing(EpochClient().lines(params)) as lines:
            async for line in lines:
                record = records.parse_line(line)
                if record["properties"].get("uuid") == identifier:
                    return record
        raise errors.NotFound(f"no Epoch plot with id '{identifier}' in {self.collection_id}")

