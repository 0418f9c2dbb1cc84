"""`epoch-plots`: Epoch's plots as a feature source, streamed and paged by skipping (see `paging`).

The query engine plans and checks every query (`geofed.query.engine.prepare`): pushed down to Epoch (`TABLE`)
are equalities on the batch-table columns the doc names (`filter_columns`: plotid, collection_id, facility_id;
the doc gives no full list, so no other name is sent), the monitoring window from `datetime`
(`monitoring_start`/`monitoring_end`, widened to whole days: a superset), a single id (its `plotid`, see
`records.plot_id`), the Epoch collection this geofed collection is bound to (`filename`), and `limit`. Everything is
evaluated again here on what comes back, in the vocabulary of the face that asked (bbox/intersects, the exact
datetime overlap, numeric comparisons, the whole CQL2 filter), so results stay exact whatever Epoch does with a
filter. Epoch has no offset: pages come from a parked stream per query (`paging.CursorCache`); it cannot sort:
a sorted query reads every match once (engine's `sorted_page`). When only plot fields are asked for
(`properties=` naming none of the statistics), the query uses `plots_only=true`, Epoch's cheap path. A count
(`resulttype=hits`) counts what the pages of the same query return (the default mode: `plots_only=true` also
returns plots whose statistics are not computed yet, which the default mode leaves out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from geofed import cql2, errors
from geofed.collection import Collection
from geofed.http.loop import run_async
from geofed.query import (
    Batch,
    FeatureQuery,
    Param,
    Params,
    Plan,
    PushdownTable,
    RecordPage,
    UpstreamSource,
    engine,
    field_name,
    instant,
    rfc3339,
    sorted_page,
)
from providers.epoch import records
from providers.epoch.client import REAL_URL, TITLE, EpochClient, flag
from providers.epoch.options import get_options
from providers.epoch.paging import REORDERED, Cursor, CursorCache, Keep

# Module level: pygeoapi builds a provider (and with it a source) per request. Only used on the upstream loop.
LOGGER = logging.getLogger(__name__)
CURSORS = CursorCache()
COUNTS: dict[Any, tuple[float, int]] = {}  # query → (expiry, aggregate plot count); module level, as CURSORS
GET_LIMIT = 100  # plots asked for when reading one by its `plotid` (the one with the id's uuid is kept)
SORT_BATCH = 1000  # lines handed to the engine's sorted paging at a time


def monitoring_window(start: dt.datetime | None, end: dt.datetime | None) -> Params:
    """`datetime` as Epoch's monitoring dates, widened to whole days (only ever a superset, if Epoch keeps
    every plot whose window overlaps them: its semantics are UNSPEC, see the `datetime_pushdown` option)."""
    params: Params = []
    if start is not None:
        params.append(("monitoring_start", start.astimezone(dt.UTC).date().isoformat()))
    if end is not None and end.year < 9999:
        params.append(("monitoring_end", (end.astimezone(dt.UTC).date() + dt.timedelta(days=1)).isoformat()))
    return params


def table(columns: tuple[str, ...]) -> PushdownTable:
    return PushdownTable(properties={name: Param(name, many=False) for name in columns if name in
                                     records.TEXT_FIELDS},
                         datetime=monitoring_window, datetime_exact=False)


TABLE = table(records.FILTER_COLUMNS)
FILTER_COLUMNS = ",".join(records.FILTER_COLUMNS)


class PlotSource(UpstreamSource):
    collection = Collection(
        id="epoch-plots",
        title="Epoch plots: biomass and land-use-change emissions",
        description=(
            "Monitored plots (cocoa, soy, ... smallholdings and farms) with plot-level biomass (AGB, BGB, SOC) and "
            "land-use-change emissions from Epoch's SCo2 API: one polygon per plot, with its monitoring window, "
            "yearly series and upload metadata. Time is the plot's monitoring window. Equalities on text "
            "properties (collection_id, facility_id, plotid, ...) and datetime are answered by Epoch; page with "
            "limit/offset."
        ),
        keywords=("biomass", "land use change", "emissions", "deforestation", "plots", "Epoch"),
        license="other",
        providers=({"name": TITLE, "roles": ["producer", "processor", "host"], "url": REAL_URL},),
        # Epoch's doc states no temporal extent (its examples only show 2020-2024 windows): unknown, not made up.
        interval=(None, None),
        links=({"type": "text/html", "rel": "about", "title": "Epoch SCo2 API, fetch biomass emissions",
                "href": REAL_URL, "hreflang": "en-US"},),
        item_assets={key: {"title": title, "type": "image/png", "roles": ["thumbnail", "overview"]}
                     for key, _, title in records.THUMBNAILS},
        options={
            "filename": None,  # bind this collection to one Epoch collection (pushed down as `filename`)
            "datetime_pushdown": "overlap",  # Epoch's date semantics are UNSPEC: `none` filters dates here only
            "stream_cache_size": 8,  # queries whose upstream stream stays open for the next page
            "stream_cache_ttl": 60,  # idle seconds before such a stream is closed
            "min_upstream_limit": 1000,  # smallest `limit` a stream is opened with (it doubles while paging)
            "max_scan": 200_000,  # most plots read for one query (deeper / wider → 400 asking to narrow it)
            "count_pages": True,  # OGC pages carry an exact numberMatched (one counting read per query, cached)
            "filter_columns": FILTER_COLUMNS,  # equalities sent to Epoch (its documented batch-table columns)
            "reordered": "recover",  # a re-opened stream in another order: recover | error | ignore (paging)
            "legacy_uuid_ids": True,  # bare-uuid ids (before plotid~uuid): one `uuid=` lookup; refused → 404
        },
    )
    upstream = "epoch"
    queryables = records.QUERYABLES
    selectable = (*records.ANNUAL_FIELDS, "metadata")  # objects: selectable with `properties=`, not filterable
    stac_queryables = records.STAC_QUERYABLES
    table = TABLE
    time_fields = records.TIME_FIELDS
    time_field = "monitoring_start"
    stac_names = records.STAC_NAMES
    page_size = SORT_BATCH

    def __init__(self, filename: str | None = None, datetime_pushdown: str = "overlap", stream_cache_size: int = 8,
                 stream_cache_ttl: float = 60.0, min_upstream_limit: int = 1000, max_scan: int = 200_000,
                 count_pages: bool = True, filter_columns: str = FILTER_COLUMNS, reordered: str = "recover",
                 legacy_uuid_ids: bool = True) -> None:
        self.filename = filename  # the Epoch collection this geofed collection is bound to; None = all
        # How Epoch selects plots by monitoring_start/end is UNSPEC. "overlap" assumes it keeps every plot whose
        # window overlaps the dates (then pushing down only narrows); "none" filters here only.
        if datetime_pushdown not in ("overlap", "none"):
            raise ValueError(f"epoch option datetime_pushdown must be overlap or none, got {datetime_pushdown!r}")
        # The doc: "any column name from the batch table", naming plotid, collection_id and facility_id; which
        # other properties are columns is UNSPEC (an unknown name may be refused): only the named ones by default.
        self.pushed = tuple(c.strip() for c in filter_columns.split(",") if c.strip() in records.TEXT_FIELDS)
        self.table = table(self.pushed)
        if datetime_pushdown == "none":
            self.table = dataclasses.replace(self.table, datetime=None)
        # The doc promises no order of the plots; see `paging` for what each choice does when it changes.
        if reordered not in REORDERED:
            raise ValueError(f"epoch option reordered must be one of {', '.join(REORDERED)}, got {reordered!r}")
        self.reordered, self.legacy_uuid_ids = reordered, legacy_uuid_ids
        self.min_upstream_limit, self.max_scan, self.count_pages = min_upstream_limit, max_scan, count_pages
        CURSORS.configure(stream_cache_size, stream_cache_ttl)
        self.stream_cache_ttl = stream_cache_ttl

    # ------------------------------------------------------------------ FeatureSource
    async def query(self, q: FeatureQuery) -> RecordPage:
        return await run_async(self._query(q))

    async def get(self, identifier: str) -> dict[str, Any]:
        return await run_async(self._get(identifier))

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        """Upstream plots [offset, offset + limit) for these parameters, unchecked (the engine's contract),
        through a parked stream: Epoch has no offset."""
        sent = self._bound(params)
        key = ("fetch", self.collection_id, tuple(sorted(sent)))
        min_limit = max(self.min_upstream_limit, 2 * (offset + limit + 1))
        page = await run_async(CURSORS.page(key, self._cursor(sent, min_limit), offset, limit))
        return Batch([records.parse_line(line) for line in page.lines], page.total, page.more)

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_feature(record)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_item(record, self.context())

    # ------------------------------------------------------------------ planning
    def _bound(self, params: Params) -> Params:
        return [("filename", self.filename), *params] if self.filename else list(params)

    def _params(self, q: FeatureQuery, plan: Plan) -> Params:
        """The plan's parameters, the bound collection, and a single id's `plotid` (several ids, or the id's
        uuid: checked here)."""
        params = self._bound(plan.params)
        plotid = records.split_id(q.ids[0])[0] if q.ids and len(q.ids) == 1 else None
        if plotid is not None and "plotid" in self.pushed and all(name != "plotid" for name, _ in params):
            params.append(("plotid", plotid))
        return params

    def _plots_only(self, q: FeatureQuery) -> bool:
        """Whether Epoch's `plots_only` records answer the query: only plot fields are asked for or compared
        (equalities Epoch applies excepted: its records lack them). Not for a bare count: it counts what the
        default pages return, and `plots_only` also returns plots whose statistics are not computed yet."""
        if q.face != "ogc" or q.properties_wanted is None or q.has_time or q.sortby:
            return False
        wanted = (set(q.properties_wanted or []) | (set(q.equals) - set(self.pushed))
                  | cql2.attributes(q.filter))
        return wanted <= records.PLOTS_ONLY_FIELDS | {"id", "geometry"}

    @staticmethod
    def _keep(q: FeatureQuery, prepared: engine.Prepared) -> Keep | None:
        """The local check, or None when the query has no condition at all."""
        if prepared.plan.exact or (prepared.node is None and not (q.bbox or q.intersects or q.has_time or q.ids)):
            return None  # Epoch applies every condition itself
        return prepared.keep

    def _opener(self, params: Params) -> Callable[[int], AsyncIterator[bytes]]:
        client = EpochClient()
        return lambda limit: client.lines({**dict(params), "limit": str(limit), "aggregate": flag(False)})

    def _cursor(self, params: Params, min_limit: int) -> Callable[[], Cursor]:
        return lambda: Cursor(self._opener(params), records.parse_line, min_limit, self.max_scan, self.reordered)

    # ------------------------------------------------------------------ queries
    async def _query(self, q: FeatureQuery) -> RecordPage:
        fields = self.fields(q.face)
        for name, _ in q.sortby:
            if field_name(name) not in fields and name != "id":
                raise errors.InvalidParameter(f"cannot sort by unknown property '{name}'", parameter="sortby")
        prepared = engine.prepare(self, q)
        if prepared.plan.empty:
            return RecordPage([], 0, False, [])
        params = self._params(q, prepared.plan)
        keep = self._keep(q, prepared)
        if self._plots_only(q):
            params.append(("plots_only", "true"))
            local = dataclasses.replace(q, equals={k: v for k, v in q.equals.items() if k not in self.pushed})
            keep = self._keep(local, engine.prepare(self, local))
        if q.sortby and not q.hits_only:
            page = await self._sorted(q, params, keep, prepared)
        else:
            page = await self._paged(q, params, keep)
        page.objects = [prepared.view(record) for record in page.records]
        return page

    async def _paged(self, q: FeatureQuery, params: Params, keep: Keep | None) -> RecordPage:
        # the key is everything that shapes the stream; the local check is part of it (it decides the indexes)
        conditions = (q.face, q.bbox, q.intersects, q.start, q.end, sorted(q.equals.items()), q.ids, q.filter)
        key = (self.collection_id, tuple(sorted(params)), repr(conditions))
        if q.hits_only:  # the same count as the pages' numberMatched
            return RecordPage([], await self._count(key, params, keep), False)
        need = q.offset + q.limit + 1
        min_limit = max(self.min_upstream_limit, 2 * need if keep is None else 4 * need)
        page = await CURSORS.page(key, self._cursor(params, min_limit), q.offset, q.limit, keep)
        total = page.total
        if total is None and q.face == "ogc" and self.count_pages:
            # OGC clients (QGIS) show numberMatched as the layer's size: counted over the pages' own selection.
            # It is optional: a count that fails, or takes longer than one upstream call may (a stream that
            # trickles in), leaves it out, never the page that was read whole.
            try:
                async with asyncio.timeout(EpochClient().http.policy.timeout):
                    total = await self._count(key, params, keep)
            except errors.UpstreamError as exc:
                LOGGER.warning("epoch: no numberMatched for this page (%s)", exc.message)
            except TimeoutError:
                LOGGER.warning("epoch: no numberMatched for this page (counting took over the upstream timeout)")
        return RecordPage([records.parse_line(line) for line in page.lines], total, page.more)

    async def live_interval(self) -> tuple[str | None, str | None] | None:
        """Epoch documents no period: its `aggregate=true` answer over the collection gives the earliest
        `monitoring_start` and the latest `monitoring_end` (one line per collection listing)."""
        return await run_async(self._live_interval())

    async def _live_interval(self) -> tuple[str | None, str | None] | None:
        props = await self._aggregate(self._bound([]), get_options().aggregate_limit)
        start, end = instant(props.get("monitoring_start")), instant(props.get("monitoring_end"))
        return (rfc3339(start), rfc3339(end)) if start or end else None

    @staticmethod
    async def _aggregate(params: Params, limit: int) -> dict[str, Any]:
        """The properties of Epoch's one `aggregate=true` feature for these parameters ({} when nothing matches),
        with an explicit `limit` (the doc's aggregate default is one plot)."""
        sent = {**dict(params), "aggregate": flag(True), "limit": str(limit)}
        async with aclosing(EpochClient().lines(sent)) as lines:
            found = [records.parse_line(line) async for line in lines]
        return found[0]["properties"] if found else {}

    async def _count(self, key: Any, params: Params, keep: Keep | None) -> int:
        """Epoch applied every condition (no local check): its `aggregate=true` answer counts the same plots in
        one line (`aggregate_plot_count`, with an explicit `limit`: the aggregate default is one plot). Else a
        counting read of its own, cached like the query's streams."""
        if keep is None and all(name != "plots_only" for name, _ in params):
            cached = COUNTS.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            count = int((await self._aggregate(params, self.max_scan)).get("aggregate_plot_count") or 0)
            if count < self.max_scan:
                COUNTS[key] = (time.monotonic() + self.stream_cache_ttl, count)
                return count
        return await CURSORS.count(("count", *key), self._cursor(params, self.max_scan), keep)

    async def _sorted(self, q: FeatureQuery, params: Params, keep: Keep | None,
                      prepared: engine.Prepared) -> RecordPage:
        """Epoch cannot sort: every match is read from one stream (up to `max_scan` plots, not cached) and the
        engine keeps only the best offset + limit."""
        async with aclosing(self._opener(params)(self.max_scan)) as lines:

            async def fetch(offset: int, limit: int) -> Batch:
                batch: list[dict[str, Any]] = []
                while len(batch) < limit and (line := await anext(lines, None)) is not None:
                    batch.append(records.parse_line(line))
                return Batch(batch, more=len(batch) == limit)

            return await sorted_page(fetch, keep or (lambda record: True), prepared.sort_key, q.offset, q.limit,
                                     SORT_BATCH, self.max_scan)

    async def _get(self, identifier: str) -> dict[str, Any]:
        """One plot by its id, found through its `plotid` (a documented column); the id's uuid picks it."""
        plotid, uuid = records.split_id(identifier)
        missing = errors.NotFound(f"no Epoch plot with id '{identifier}' in {self.collection_id}")
        if plotid is not None:
            column = ("plotid", plotid)
        elif self.legacy_uuid_ids:  # an id from before plotid~uuid: `uuid` is no documented column, try once
            column = ("uuid", uuid)
        else:
            raise missing
        params = dict(self._bound([column, ("limit", str(GET_LIMIT)), ("aggregate", flag(False))]))
        try:
            async with aclosing(EpochClient().lines(params)) as lines:
                async for line in lines:
                    record = records.parse_line(line)
                    if str(record["properties"].get("uuid")) == uuid:
                        return record
        except errors.UpstreamRejected:
            if plotid is not None:
                raise
            LOGGER.info("epoch: a bare-uuid id was refused upstream (uuid is not a documented column)")
        raise missing
