"""`spaceknow-scenes`: SpaceKnow's Ragnar imagery search as a feature source.

The engine (`geofed.query.engine`) does the querying; this source declares what the search evaluates itself
(`table`: bbox, datetime, provider/dataset, ids, datetime order) and reads one "upstream page" (`fetch`).
The upstream's answer to a set of parameters is one finished search: the bbox (or, without one, the configured
default areas) is split into windows SpaceKnow accepts, each searched through a pipeline (following `cursor`),
in parallel, merged with duplicates removed and ordered. A finished search is cached per (extent, datetime,
datasets), so paging through it never re-runs a pipeline; `fetch` slices it.

The search is exact for what it is sent: the windows tile the bbox exactly and SpaceKnow returns every scene
that intersects a window in the datetime interval (inclusive, second precision; a start with a fraction of a
second is sent rounded up). Everything else (CQL2, intersects, other sort keys) the engine evaluates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import shapely.geometry

from geofed import errors
from geofed.collection import Collection
from geofed.http.loop import run_async
from geofed.query import (
    Batch,
    BBox,
    FeatureQuery,
    Param,
    Params,
    PushdownTable,
    RecordPage,
    UpstreamSource,
    engine,
    parse_bbox,
    sort_objects,
)
from providers.spaceknow import pipelines, records, windows
from providers.spaceknow.client import NAME, TITLE, SpaceKnowClient

LOGGER = logging.getLogger(__name__)
SCENE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
DEFAULT_MAX_SIDE_M = 400_000.0  # the doc: "Search area must be smaller than 400 x 400 km"
DATASET_CATALOG_TTL = 3600.0
MAX_CACHED = 512

# Module level: pygeoapi builds a provider (and so a source) on every request. Only touched on the upstream loop.
_cache: dict[tuple[Any, ...], tuple[float, asyncio.Future[Any]]] = {}
_catalog: dict[str, Any] = {}

QUERYABLES: dict[str, dict[str, Any]] = {
    "provider": {"type": "string", "title": "SpaceKnow imagery provider code (pl, ab, ee, ...)"},
    "dataset": {"type": "string", "title": "SpaceKnow dataset of the provider (PSScene, pleiades, ...)"},
    "satellite": {"type": "string"},
    "platform": {"type": "string"},
    "datetime": {"type": "string", "format": "date-time"},
    "gsd": {"type": "number", "title": "finest band ground sample distance, metres"},
    "view:off_nadir": {"type": "number"},
    "view:azimuth": {"type": "number"},
    "view:sun_azimuth": {"type": "number"},
    "view:sun_elevation": {"type": "number"},
    "proj:code": {"type": "string"},
    "spaceknow:foreign_id": {"type": "string", "title": "the imagery provider's own scene id"},
    "spaceknow:downloadable": {"type": "boolean"},
}


def _bbox_params(bbox: BBox) -> Params:
    return [("bbox", ",".join(repr(float(c)) for c in bbox))]


def _datetime_params(start: dt.datetime | None, end: dt.datetime | None) -> Params:
    """SpaceKnow's bounds are inclusive, in whole seconds: a start with a fraction is rounded up, the end down."""
    out: Params = []
    if start is not None:
        if start.microsecond:
            start = start.replace(microsecond=0) + dt.timedelta(seconds=1)
        out.append(("start", records.format_time(start)))
    if end is not None:
        out.append(("end", records.format_time(end)))
    return out


def _dataset_key(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry.get("provider")), str(entry.get("dataset"))


def _max_side(group: list[dict[str, Any]]) -> float:
    sides = []
    for dataset in group:
        try:
            side = float(dataset.get("maxMbrSide") or DEFAULT_MAX_SIDE_M)
        except (TypeError, ValueError):
            side = DEFAULT_MAX_SIDE_M
        sides.append(side if math.isfinite(side) and side > 0 else DEFAULT_MAX_SIDE_M)
    return min(sides)


def _extent(window: BBox) -> dict[str, Any]:
    """A window as a search extent: a polygon, or the point / line a degenerate one is (a Point's bounds)."""
    w, s, e, n = window
    if w == e and s == n:
        shape: Any = shapely.geometry.Point(w, s)
    elif w == e or s == n:
        shape = shapely.geometry.LineString([(w, s), (e, n)])
    else:
        shape = shapely.geometry.box(w, s, e, n)
    return shapely.geometry.mapping(shape)  # type: ignore[no-any-return]


async def _cached(key: tuple[Any, ...], make: Callable[[], Awaitable[Any]], ttl: float) -> Any:
    """Single-flight cache of finished upstream work (shared by concurrent callers); failures are never kept."""
    now = time.monotonic()
    entry = _cache.get(key)
    if entry is None or entry[0] < now or (entry[1].done() and (entry[1].cancelled() or entry[1].exception())):
        if len(_cache) >= MAX_CACHED:
            for stale in sorted(_cache, key=lambda k: _cache[k][0])[: MAX_CACHED // 4]:
                _cache.pop(stale, None)
        entry = (now + ttl, asyncio.ensure_future(make()))
        _cache[key] = entry
    try:
        return await asyncio.shield(entry[1])
    except BaseException:
        if _cache.get(key) is entry:
            _cache.pop(key, None)
        raise


class SceneSource(UpstreamSource):
    collection = Collection(
        id="spaceknow-scenes",
        title="SpaceKnow scenes",
        description=(
            "Satellite scenes SpaceKnow can analyse (Planet, Airbus, Sentinel via Earth Engine, ...), found through "
            "SpaceKnow's imagery search. Filter with bbox, datetime, provider and dataset (queryables). Without a "
            "bbox the configured default areas of interest are searched."
        ),
        keywords=("satellite imagery", "SpaceKnow", "scenes"),
        license="proprietary",
        providers=({"name": "SpaceKnow", "roles": ["host", "processor"], "url": "https://spaceknow.com"},),
        # SpaceKnow documents no archive period. The start is the launch of Pléiades 1A (17 December 2011), the
        # earliest mission among the datasets searched by default; the archive grows: open end.
        interval=("2011-12-17T00:00:00Z", None),
        links=({"type": "text/html", "rel": "about", "title": "SpaceKnow imagery search (Ragnar)",
                "href": "https://docs.spaceknow.com/api/ragnar.html", "hreflang": "en-US"},),
        options={
            # searched when a query names neither provider nor dataset
            "datasets": [{"provider": "pl", "dataset": "PSScene"}, {"provider": "ab", "dataset": "pleiades"},
                         {"provider": "ee", "dataset": "COPERNICUS/S2_HARMONIZED"}],
            # searched when a query has no bbox (QGIS and GDAL first ask for the whole layer)
            "default_areas": [
                {"name": "Permian Basin", "bbox": [-104.5, 30.8, -101.5, 33.2]},
                {"name": "West Turkmenistan", "bbox": [53.0, 38.2, 56.0, 40.2]},
                {"name": "Four Corners", "bbox": [-109.2, 36.0, -107.2, 37.5]},
                {"name": "Upper Silesia", "bbox": [18.2, 49.7, 19.6, 50.5]},
                {"name": "Hassi Messaoud", "bbox": [5.5, 31.2, 6.8, 32.2]},
            ],
            "max_windows": 16,  # a bbox needing more 400 km search windows is refused (400)
            "window_fill": 0.9,  # windows are drawn at 90 % of the upstream's limit
        },
    )
    upstream = NAME
    queryables = QUERYABLES
    table = PushdownTable(
        properties={"provider": Param("provider"), "dataset": Param("dataset")},
        bbox=_bbox_params,
        datetime=_datetime_params,
        ids=Param("ids"),
        sorts={"datetime": {"asc": "datetime", "desc": "-datetime"}},
        default_sort="-datetime",  # newest first, then id
    )
    time_fields = ("datetime",)
    time_field = "datetime"
    watch_field, watch_areas = "datetime", True  # geofed.alerts: new scenes over the subscriptions' areas
    stac_names = records.STAC_NAMES
    page_size = 1000  # a slice of a cached search: no upstream call

    def __init__(
        self,
        datasets: Iterable[dict[str, str]] | None = None,
        default_areas: Iterable[dict[str, Any]] | None = None,
        max_windows: int | None = None,
        window_fill: float | None = None,
        **_: Any,
    ) -> None:
        opts = self.collection.options
        self.default_datasets = [(str(d["provider"]), str(d["dataset"]))
                                 for d in (opts["datasets"] if datasets is None else datasets)]
        self.default_areas = [(str(a.get("name", "")), parse_bbox(a["bbox"], "default_areas"))
                              for a in (opts["default_areas"] if default_areas is None else default_areas)]
        self.max_windows = int(opts["max_windows"] if max_windows is None else max_windows)
        # windows are drawn a little smaller than the upstream limit: it measures extents its own way
        self.window_fill = float(opts["window_fill"] if window_fill is None else window_fill)
        self._setup = (tuple(self.default_datasets), tuple(self.default_areas), self.max_windows, self.window_fill)
        self._client: SpaceKnowClient | None = None

    @property
    def client(self) -> SpaceKnowClient:
        """Built on first use, so a misconfigured upstream fails the request (502), not the collection's setup."""
        if self._client is None:
            self._client = SpaceKnowClient()
        return self._client

    # ------------------------------------------------------------------ FeatureSource
    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_feature(record)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_item(record, self.context())

    async def query(self, q: FeatureQuery) -> RecordPage:
        try:
            return await run_async(engine.run(self, q))
        except errors.InvalidParameter as exc:
            if exc.parameter == "bbox" and q.bbox is None and q.intersects is not None:  # the bounds of intersects
                raise errors.InvalidParameter(exc.message.replace("'bbox'", "'intersects'"),
                                              parameter="intersects") from None
            raise

    async def get(self, identifier: str) -> dict[str, Any]:
        return await run_async(self._get(identifier))

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        """A slice of the finished search for `params` (cached: paging never re-runs a pipeline)."""
        ttl = self.client.options.search_cache_ttl
        scenes = await _cached(("query", self._setup, tuple(params)), lambda: self._scenes(params), ttl)
        return Batch(scenes[offset:offset + limit], total=len(scenes))

    # ------------------------------------------------------------------ internals
    async def _get(self, identifier: str) -> dict[str, Any]:
        if not SCENE_ID.match(identifier):
            raise errors.NotFound(f"no scene {identifier!r} in {self.collection_id}")
        try:
            scene = await self.client.get_metadata(identifier)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"no scene {identifier!r} in {self.collection_id}") from None
        if not isinstance(scene, dict) or "sceneId" not in scene:
            raise errors.UpstreamError(f"{TITLE} answered get-metadata without a scene", upstream=NAME)
        return scene

    async def _get_or_none(self, identifier: str) -> dict[str, Any] | None:
        try:
            return await self._get(identifier)
        except errors.NotFound:
            return None

    async def _scenes(self, params: Params) -> list[dict[str, Any]]:
        """Every scene matching `params` (the table's encoding), in the order asked (default newest first)."""
        values: dict[str, list[str]] = {}
        for key, value in params:
            values.setdefault(key, []).append(value)
        providers = set(values["provider"]) if "provider" in values else None
        names = set(values["dataset"]) if "dataset" in values else None
        start, end = (values.get("start") or [None])[0], (values.get("end") or [None])[0]
        bbox = parse_bbox(values["bbox"][0]) if "bbox" in values else None
        groups = await self._dataset_groups(providers, names)
        ids = set(values.get("ids") or ())
        if ids and bbox is None:
            # get-metadata takes no filters: the other parameters are applied to its answers as the search would
            found = await asyncio.gather(*(self._get_or_none(i) for i in sorted(ids)))
            scenes = [s for s in found if s is not None
                      and (providers is None or str(s.get("provider")) in providers)
                      and (names is None or str(s.get("dataset")) in names)
                      and (start is None or str(s.get("datetime")) >= start)
                      and (end is None or str(s.get("datetime")) <= end)]
        else:
            areas = [(bbox, True)] if bbox is not None else [(b, False) for _, b in self.default_areas if b]
            scenes = await self._search(areas, groups, start, end) if groups else []
            if ids:
                scenes = [s for s in scenes if s.get("sceneId") in ids]
        direction = "asc" if (values.get("sort") or ["-datetime"])[0] == "datetime" else "desc"
        return sort_objects(scenes, [("datetime", direction), ("id", "asc")], view=records.to_feature)

    # ---- datasets
    async def _dataset_catalog(self) -> list[dict[str, Any]]:
        if _catalog.get("expires", 0) < time.monotonic():
            listing = await self.client.list_datasets()
            if not isinstance(listing, list):
                raise errors.UpstreamError(f"{TITLE} list-datasets did not answer a list", upstream=NAME)
            _catalog.update(value=[d for d in listing if isinstance(d, dict)],
                            expires=time.monotonic() + DATASET_CATALOG_TTL)
        return _catalog["value"]

    async def _dataset_groups(self, providers: set[str] | None, names: set[str] | None
                              ) -> list[list[dict[str, Any]]]:
        """Datasets to search, grouped as SpaceKnow requires (`requiresSeparateSearch` ones alone)."""
        catalog = await self._dataset_catalog()
        for wanted, field in ((providers, "provider"), (names, "dataset")):
            known = {str(d.get(field)) for d in catalog}
            unknown = sorted((wanted or set()) - known)
            if unknown:
                raise errors.InvalidParameter(
                    f"'{field}' {', '.join(map(repr, unknown))} is not offered by {TITLE}; known: "
                    f"{', '.join(sorted(known))}",
                    parameter=field,
                )
        if providers is None and names is None:
            defaults = set(self.default_datasets)
            chosen = [d for d in catalog if _dataset_key(d) in defaults]
            if len(chosen) < len(defaults):
                LOGGER.warning("spaceknow: configured datasets missing upstream: %s",
                               sorted(defaults - {_dataset_key(d) for d in chosen}))
        else:
            chosen = [d for d in catalog if (providers is None or str(d.get("provider")) in providers)
                      and (names is None or str(d.get("dataset")) in names)]
        together = [d for d in chosen if not d.get("requiresSeparateSearch")]
        return ([together] if together else []) + [[d] for d in chosen if d.get("requiresSeparateSearch")]

    # ---- windows and searches
    async def _search(self, areas: list[tuple[BBox, bool]], groups: list[list[dict[str, Any]]],
                      start: str | None, end: str | None) -> list[dict[str, Any]]:
        """(bbox, given by the client) areas × dataset groups → windows, searched in parallel and merged."""
        jobs: list[tuple[BBox, list[dict[str, Any]]]] = []
        for group in groups:
            side = _max_side(group) * self.window_fill
            for bbox, given in areas:
                found = windows.plan(bbox, side, self.max_windows) if given else windows.split(bbox, side)
                jobs.extend((w, group) for w in found)
        limit = asyncio.Semaphore(max(1, self.client.options.search_concurrency))

        async def one(window: BBox, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
            async with limit:
                datasets = sorted(_dataset_key(d) for d in group)
                key = ("window", tuple(round(c, 7) for c in window), start, end, tuple(datasets))
                body: dict[str, Any] = {
                    "datasets": [{"provider": p, "dataset": d} for p, d in datasets],
                    "extent": _extent(window),
                    "startDatetime": start,
                    "endDatetime": end,
                }
                result: list[dict[str, Any]] = await _cached(key, lambda: self._search_window(body),
                                                             self.client.options.search_cache_ttl)
                return result

        merged: dict[str, dict[str, Any]] = {}
        for found in await asyncio.gather(*(one(w, g) for w, g in jobs)):
            for scene in found:
                merged.setdefault(str(scene.get("sceneId")), scene)
        return list(merged.values())

    async def _search_window(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """One window: a pipeline per page, passing back the `cursor` each answer carries beside `results`.

        A page without a cursor ends the search, unless it is as full as the pages before it, which had one:
        then the cursor may have been lost (the doc is silent on how the end is said). With the setting
        `search_lost_cursor` = "probe" (default) and cursors that were the offsets of the next page, the next
        offset is asked for (an empty page confirms the end); otherwise geofed fails (502) rather than serve a
        silently shortened result. "error" always fails, "end" trusts the answer.
        """
        out: list[dict[str, Any]] = []
        opts = self.client.options
        full_page = 0  # the size of the pages that carried a cursor
        offsets = True  # every cursor so far was the offset of the next page
        served = 0  # results read so far
        while True:
            result = await pipelines.run(self.client, "search", body)
            if not isinstance(result, dict) or not isinstance(result.get("results"), list):
                raise errors.UpstreamError(f"{TITLE} search retrieve answered without results", upstream=NAME)
            page = [s for s in result["results"] if isinstance(s, dict) and s.get("sceneId")]
            out.extend(page)
            served += len(result["results"])
            cursor = result.get("cursor")
            if not result["results"]:
                return out
            if cursor is None:
                if not full_page or len(result["results"]) < full_page or opts.search_lost_cursor == "end":
                    return out
                if opts.search_lost_cursor == "error" or not offsets:
                    raise errors.UpstreamError(
                        f"{TITLE} search answered a full page of {full_page} scenes without a cursor after pages "
                        "that had one: the rest of the results cannot be read", upstream=NAME)
                cursor = served  # probe the next offset
            else:
                full_page = max(full_page, len(result["results"]))
                offsets = offsets and cursor == served
            if len(out) >= opts.search_max_scenes:
                raise errors.InvalidParameter(
                    f"the search matches more than {opts.search_max_scenes} {TITLE} scenes; narrow bbox or datetime",
                    parameter="bbox")
            body = {**body, "cursor": cursor}
