"""`spaceknow-scenes`: SpaceKnow's Ragnar imagery search as a feature source.

A query becomes one search per (window, dataset group): the bbox (or, without one, the configured default areas)
is split into windows SpaceKnow accepts, each searched through a pipeline (following `cursor`), in parallel, and
merged with duplicates removed. A finished search is cached per (extent, datetime, datasets), so paging through
the result never re-runs a pipeline; everything else (exact geometry, CQL2, sorting, paging) is evaluated here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import shapely.geometry

from geofed import cql2, errors
from geofed.http.loop import run_async
from geofed.query import BBox, FeatureQuery, RecordPage, parse_bbox
from providers.spaceknow import pipelines, records, windows
from providers.spaceknow.client import NAME, TITLE, SpaceKnowClient

LOGGER = logging.getLogger(__name__)
SCENE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
DEFAULT_MAX_SIDE_M = 400_000.0  # the doc: "Search area must be smaller than 400 x 400 km"
DATASET_CATALOG_TTL = 3600.0
MAX_CACHED_SEARCHES = 512

# Module level: pygeoapi builds a provider (and so a source) on every request. Only touched on the upstream loop.
_searches: dict[tuple[Any, ...], tuple[float, asyncio.Future[list[dict[str, Any]]]]] = {}
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
}


def _dataset_key(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry.get("provider")), str(entry.get("dataset"))


class SceneSource:
    collection_id = records.COLLECTION_ID
    title = "SpaceKnow scenes"
    description = (
        "Satellite scenes SpaceKnow can analyse (Planet, Airbus, Sentinel via Earth Engine, ...), found through "
        "SpaceKnow's imagery search. Filter with bbox, datetime, provider and dataset."
    )
    upstream = NAME

    def __init__(
        self,
        datasets: Iterable[dict[str, str]] = (),
        default_areas: Iterable[dict[str, Any]] = (),
        max_windows: int = 16,
        window_fill: float = 0.9,
        **_: Any,
    ) -> None:
        self.default_datasets = [(str(d["provider"]), str(d["dataset"])) for d in datasets]
        self.default_areas = [(str(a.get("name", "")), parse_bbox(a["bbox"], "default_areas")) for a in default_areas]
        self.max_windows = int(max_windows)
        # windows are drawn a little smaller than the upstream limit: it measures extents its own way
        self.window_fill = float(window_fill)
        self._client: SpaceKnowClient | None = None

    @property
    def client(self) -> SpaceKnowClient:
        """Built on first use, so a misconfigured upstream fails the request (502), not the collection's setup."""
        if self._client is None:
            self._client = SpaceKnowClient()
        return self._client

    # ------------------------------------------------------------------ FeatureSource
    def fields(self) -> dict[str, dict[str, Any]]:
        return dict(QUERYABLES)

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_feature(record)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_item(record, self.collection_id)

    async def get(self, identifier: str) -> dict[str, Any]:
        return await run_async(self._get(identifier))

    async def query(self, q: FeatureQuery) -> RecordPage:
        return await run_async(self._query(q))

    def stac_collection(self) -> dict[str, Any]:
        return {
            "type": "Collection",
            "stac_version": "1.1.0",
            "stac_extensions": records.STAC_EXTENSIONS,
            "id": self.collection_id,
            "title": self.title,
            "description": self.description,
            "keywords": ["satellite imagery", "SpaceKnow", "scenes"],
            "license": "proprietary",
            "providers": [{"name": "SpaceKnow", "roles": ["host", "processor"], "url": "https://spaceknow.com"}],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            "summaries": {"provider": sorted({p for p, _ in self.default_datasets})},
            "links": [],
        }

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

    async def _query(self, q: FeatureQuery) -> RecordPage:
        if q.ids and q.bbox is None and q.intersects is None:
            found = await asyncio.gather(*(self._get_or_none(i) for i in q.ids))
            scenes = [s for s in found if s is not None]
        else:
            groups = await self._dataset_groups(q)
            scenes = await self._search(self._areas(q), groups, q) if groups else []
        keep = self._keeper(q)
        matched = [s for s in scenes if keep(s)]
        self._sort(matched, q)
        page = matched[q.offset:q.offset + q.limit]
        return RecordPage(page, len(matched), q.offset + len(page) < len(matched))

    async def _get_or_none(self, identifier: str) -> dict[str, Any] | None:
        try:
            return await self._get(identifier)
        except errors.NotFound:
            return None

    # ---- datasets
    async def _dataset_catalog(self) -> list[dict[str, Any]]:
        if _catalog.get("expires", 0) < time.monotonic():
            listing = await self.client.list_datasets()
            if not isinstance(listing, list):
                raise errors.UpstreamError(f"{TITLE} list-datasets did not answer a list", upstream=NAME)
            _catalog.update(value=[d for d in listing if isinstance(d, dict)],
                            expires=time.monotonic() + DATASET_CATALOG_TTL)
        return _catalog["value"]

    @staticmethod
    def _wanted(q: FeatureQuery, name: str) -> set[str] | None:
        """Values a query allows for `provider` / `dataset` (query string and AND-ed CQL2 `=` / `IN`); None = any."""
        allowed: set[str] | None = None
        if name in q.equals:
            allowed = {str(q.equals[name])}
        for node in cql2.conjuncts(q.filter):
            values: set[str] | None = None
            comparison = cql2.simple_comparison(node)
            if comparison and comparison[0] == name and comparison[1] == "=":
                values = {str(comparison[2])}
            listed = cql2.in_list(node)
            if listed and listed[0] == name:
                values = {str(v) for v in listed[1]}
            if values is not None:
                allowed = values if allowed is None else allowed & values
        return allowed

    async def _dataset_groups(self, q: FeatureQuery) -> list[list[dict[str, Any]]]:
        """Datasets to search, grouped as SpaceKnow requires (`requiresSeparateSearch` ones alone)."""
        catalog = await self._dataset_catalog()
        providers, names = self._wanted(q, "provider"), self._wanted(q, "dataset")
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

    # ---- areas and windows
    def _areas(self, q: FeatureQuery) -> list[tuple[BBox, bool]]:
        """(bbox, given by the client) pairs. No bbox at all (QGIS/GDAL first ask for everything) → the defaults."""
        if q.bbox is not None:
            return [(q.bbox, True)]
        if q.intersects is not None:
            try:
                return [(tuple(shapely.geometry.shape(q.intersects).bounds), True)]  # type: ignore[list-item]
            except Exception:
                raise errors.InvalidParameter("'intersects' is not a GeoJSON geometry",
                                              parameter="intersects") from None
        return [(bbox, False) for _, bbox in self.default_areas if bbox is not None]

    async def _search(self, areas: list[tuple[BBox, bool]], groups: list[list[dict[str, Any]]], q: FeatureQuery
                      ) -> list[dict[str, Any]]:
        start = records.format_time(q.start) if q.start else None
        end = records.format_time(q.end) if q.end else None
        jobs: list[tuple[BBox, list[dict[str, Any]]]] = []
        for group in groups:
            side = min(float(d.get("maxMbrSide") or DEFAULT_MAX_SIDE_M) for d in group) * self.window_fill
            for bbox, given in areas:
                if given:
                    found = windows.plan(bbox, side, self.max_windows, "intersects" if q.bbox is None else "bbox")
                else:
                    found = windows.split(bbox, side)
                jobs.extend((w, group) for w in found)
        limit = asyncio.Semaphore(max(1, self.client.options.search_concurrency))

        async def one(window: BBox, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
            async with limit:
                return await self._cached_search(window, start, end, group)

        merged: dict[str, dict[str, Any]] = {}
        for found in await asyncio.gather(*(one(w, g) for w, g in jobs)):
            for scene in found:
                merged.setdefault(str(scene.get("sceneId")), scene)
        return list(merged.values())

    async def _cached_search(self, window: BBox, start: str | None, end: str | None,
                             group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        datasets = sorted(_dataset_key(d) for d in group)
        key = (tuple(round(c, 7) for c in window), start, end, tuple(datasets))
        now = time.monotonic()
        entry = _searches.get(key)
        if entry is None or entry[0] < now or (entry[1].done() and entry[1].exception() is not None):
            if len(_searches) >= MAX_CACHED_SEARCHES:
                for stale in sorted(_searches, key=lambda k: _searches[k][0])[: MAX_CACHED_SEARCHES // 4]:
                    _searches.pop(stale, None)
            body: dict[str, Any] = {
                "datasets": [{"provider": p, "dataset": d} for p, d in datasets],
                "extent": shapely.geometry.mapping(shapely.geometry.box(*window)),
                "startDatetime": start,
                "endDatetime": end,
            }
            future = asyncio.ensure_future(self._search_window(body))
            entry = (now + self.client.options.search_cache_ttl, future)
            _searches[key] = entry
        try:
            return await asyncio.shield(entry[1])
        except BaseException:
            if _searches.get(key) is entry:
                _searches.pop(key, None)  # never cache a failure
            raise

    async def _search_window(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """One window: pipelines until SpaceKnow stops sending a `cursor`."""
        out: list[dict[str, Any]] = []
        cap = self.client.options.search_max_scenes
        while True:
            result = await pipelines.run(self.client, "search", body)
            if not isinstance(result, dict) or not isinstance(result.get("results"), list):
                raise errors.UpstreamError(f"{TITLE} search retrieve answered without results", upstream=NAME)
            out.extend(s for s in result["results"] if isinstance(s, dict) and s.get("sceneId"))
            cursor = result.get("cursor")
            if cursor is None or not result["results"]:
                return out
            if len(out) >= cap:
                raise errors.InvalidParameter(
                    f"the search matches more than {cap} {TITLE} scenes; narrow bbox or datetime", parameter="bbox"
                )
            body = {**body, "cursor": cursor}

    # ---- local evaluation
    def _keeper(self, q: FeatureQuery) -> Callable[[dict[str, Any]], bool]:
        box = shapely.geometry.box(*q.bbox) if q.bbox else None
        area = shapely.geometry.shape(q.intersects) if q.intersects else None
        ids = set(q.ids) if q.ids else None
        matches = cql2.predicate(q.filter, temporal={"datetime"})

        def keep(scene: dict[str, Any]) -> bool:
            if ids is not None and scene.get("sceneId") not in ids:
                return False
            footprint = scene.get("footprint")
            shape = shapely.geometry.shape(footprint) if footprint else None
            if (box is not None or area is not None) and shape is None:
                return False
            if box is not None and not shape.intersects(box):  # type: ignore[union-attr]
                return False
            if area is not None and not shape.intersects(area):  # type: ignore[union-attr]
                return False
            when = records.parse_time(scene.get("datetime", ""))
            if (q.start and when < q.start.replace(microsecond=0)) or (q.end and when > q.end):
                return False
            feature = records.to_feature(scene)
            props = feature["properties"]
            for name, value in q.equals.items():
                if not _same(props.get(name), value):
                    return False
            return matches(feature)

        return keep

    @staticmethod
    def _sort(scenes: list[dict[str, Any]], q: FeatureQuery) -> None:
        """Default order: newest first, then id. `sortby` keys apply last-to-first (stable sorts)."""
        scenes.sort(key=lambda s: str(s.get("sceneId")))
        order = q.sortby or [("datetime", "desc")]
        for name, direction in reversed(order):
            def value(scene: dict[str, Any], name: str = name) -> tuple[int, Any]:
                v = records.properties(scene).get(name) if name != "id" else scene.get("sceneId")
                return (0, v) if v is not None else (1, "")  # missing values last
            present = [s for s in scenes if value(s)[0] == 0]
            missing = [s for s in scenes if value(s)[0] == 1]
            present.sort(key=lambda s: value(s)[1], reverse=direction == "desc")
            scenes[:] = present + missing


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        try:
            return float(wanted) == float(actual)
        except (TypeError, ValueError):
            return False
    return str(actual) == str(wanted)


def search_cache_clear() -> None:
    """For operators and benchmarks: forget finished searches (the next query runs pipelines again)."""
    _searches.clear()
