"""The inventory's fan-out: every section read in parallel through geofed's own sources and clients.

| section    | upstream     | read through                                                           |
|------------|--------------|------------------------------------------------------------------------|
| plumes     | carbonmapper | `PlumeSource.query` (intersects + datetime + gas)                      |
| sources    | carbonmapper | `SourceSource.query` (intersects + gas; sources span the whole record) |
| plots      | epoch        | `PlotSource(filename=c).query` per Epoch collection (intersects + time) |
| sentinelhub| sentinelhub  | the Catalog client's search (sentinel-2-l2a, intersects + datetime)    |
| spaceknow  | spaceknow    | `SceneSource.query` (Ragnar searches only: no credit is spent)         |

A section that fails is left out and its upstream's status says why (`status`: ok / failed / partial, with
`status_code`, `code` and `error` as the federated search reports them); when every section fails the whole
inventory fails with a 502. A query is bounded: one read of at most `limit` matches per section (a synchronous run
uses the synchronous feature maximum, so its cost is bounded before it is refused as too large).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from geofed import errors, upstreams
from geofed.query import FeatureQuery, UpstreamSource
from providers.carbonmapper.sources import PlumeSource, SourceSource
from providers.epoch.sources import PlotSource
from providers.inventory import records, summary
from providers.inventory.inputs import AsyncRequired, Inputs
from providers.sentinelhub.client import Catalog, SearchRequest
from providers.spaceknow.sources import SceneSource

LOGGER = logging.getLogger(__name__)
ASYNC_MAX_FEATURES = 100_000  # most matches one section reads in a job (more → the section fails, 400)
SENTINEL_COLLECTION = "sentinel-2-l2a"
SENTINEL_MAX_PAGES = 100  # 10 000 scenes; more is reported as truncated
SENTINEL_FIELDS = {"include": ["id", "properties.datetime", "properties.eo:cloud_cover"]}

Reader = Callable[[Inputs, int], Awaitable[tuple[dict[str, Any], list[dict[str, Any]]]]]


@dataclass(frozen=True)
class Section:
    name: str
    upstream: str
    read: Reader


@dataclass
class Progress:
    """Sections finished of those started; `on_change(percent, message)` is told after each one."""

    total: int = 1
    done: int = 0
    on_change: Callable[[int, str], None] | None = None

    def finish(self, name: str) -> None:
        self.done += 1
        if self.on_change is not None:
            self.on_change(self.percent, f"{self.done} of {self.total} sections read (last: {name})")

    @property
    def percent(self) -> int:
        return int(5 + 90 * self.done / max(1, self.total))


@dataclass
class Result:
    summary: dict[str, Any]
    features: list[dict[str, Any]] = field(default_factory=list)

    def feature_collection(self) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": self.features}


# ----------------------------------------------------------------- readers
async def read_all(source: UpstreamSource, query: FeatureQuery, limit: int, what: str,
                   by_part: bool = False) -> list[dict[str, Any]]:
    """Every match of `query` (as the OGC face's features) in one engine call of at most `limit` matches. With
    `by_part`, each polygon of a MultiPolygon is its own query (in parallel: an upstream that filters on the
    bbox then reads each part's extent, not the extent of all of them), merged by feature id."""
    geometry = query.intersects or {}
    parts = ([{"type": "Polygon", "coordinates": c} for c in geometry["coordinates"]]
             if by_part and geometry.get("type") == "MultiPolygon" else [geometry or None])
    pages = await asyncio.gather(*(source.query(dataclasses.replace(query, intersects=part, limit=limit, offset=0))
                                   for part in parts))
    merged: dict[str, dict[str, Any]] = {}
    for page in pages:
        features = page.objects if page.objects is not None else [source.to_feature(r) for r in page.records]
        for feature in features:
            merged.setdefault(str(feature.get("id")), feature)
        if page.more or len(merged) > limit:
            if limit < ASYNC_MAX_FEATURES:
                raise AsyncRequired(f"the area holds more than {limit - 1} {what}")
            raise errors.InvalidParameter(f"the area holds more than {limit} {what}; narrow geometry or datetime",
                                          parameter="geometry")
    return list(merged.values())


def _query(inputs: Inputs, with_time: bool = True) -> FeatureQuery:
    start, end = inputs.interval if with_time else (None, None)
    gas = {"gas": inputs.gases[0]} if len(inputs.gases) == 1 else {}
    return FeatureQuery(intersects=inputs.geometry, start=start, end=end, equals=gas)


async def read_plumes(inputs: Inputs, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    source = PlumeSource(link_sources=False)
    found = await read_all(source, _query(inputs), limit, "CarbonMapper plumes", by_part=True)
    return {"plumes": summary.plumes(found)}, [records.to_feature("plume", f) for f in found]


async def read_sources(inputs: Inputs, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    source = SourceSource()
    found = await read_all(source, _query(inputs, with_time=False), limit, "CarbonMapper sources",
                           by_part=True)
    return {"sources": summary.sources(found)}, [records.to_feature("source", f) for f in found]


async def read_plots(inputs: Inputs, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each Epoch collection in parallel; one that fails is named in the section (all failing fails it)."""
    query = FeatureQuery(intersects=inputs.geometry, start=inputs.interval[0], end=inputs.interval[1])

    async def one(name: str) -> list[dict[str, Any]]:
        return await read_all(PlotSource(filename=name), query, limit, f"Epoch plots of {name}")

    answers = await asyncio.gather(*(one(c) for c in inputs.epoch_collections), return_exceptions=True)
    by_collection: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, errors.GeofedError] = {}
    for name, answer in zip(inputs.epoch_collections, answers, strict=True):
        if isinstance(answer, AsyncRequired):
            raise answer
        if isinstance(answer, BaseException):
            failures[name] = _as_error(answer, "epoch")
        else:
            by_collection[name] = answer
    if not by_collection:
        raise next(iter(failures.values()))
    section = summary.plots(by_collection)
    section["failed_collections"] = {n: failure(e) for n, e in failures.items()}
    features = [records.to_feature("plot", f) for found in by_collection.values() for f in found]
    return {"plots": section}, features


async def read_sentinelhub(inputs: Inputs, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    catalog = Catalog()
    start, end = inputs.interval
    request = SearchRequest(SENTINEL_COLLECTION, start=start, end=end, intersects=inputs.geometry,
                            fields=SENTINEL_FIELDS, limit=100)
    scenes: list[dict[str, Any]] = []
    token: int | None = None
    for _ in range(SENTINEL_MAX_PAGES):
        page = await catalog.search(request, token)
        scenes.extend(page.records)
        token = page.next
        if token is None:
            break
    section = summary.sentinel(scenes, inputs.cloud_cover_max, SENTINEL_COLLECTION)
    section["truncated"] = token is not None
    return {"sentinelhub": section}, []


async def read_spaceknow(inputs: Inputs, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    source = SceneSource()
    start, end = inputs.interval
    query = FeatureQuery(intersects=inputs.geometry, start=start, end=end)
    found = await read_all(source, query, ASYNC_MAX_FEATURES, "SpaceKnow scenes", by_part=True)
    return {"spaceknow": summary.spaceknow(found, source.default_datasets)}, []


def sections(inputs: Inputs) -> list[Section]:
    out = [Section("plumes", "carbonmapper", read_plumes), Section("sources", "carbonmapper", read_sources)]
    if inputs.epoch_collections:
        out.append(Section("plots", "epoch", read_plots))
    if inputs.imagery:
        out += [Section("sentinelhub", "sentinelhub", read_sentinelhub),
                Section("spaceknow", "spaceknow", read_spaceknow)]
    return out


# ----------------------------------------------------------------- the fan-out
def failure(exc: errors.GeofedError) -> dict[str, Any]:
    return {"status_code": exc.status, "code": exc.code, "error": exc.message}


def _as_error(exc: BaseException, upstream: str) -> errors.GeofedError:
    if isinstance(exc, errors.GeofedError):
        return exc
    LOGGER.error("inventory: reading %s failed", upstream, exc_info=exc)
    return errors.GeofedError(f"reading {upstreams.title(upstream)} failed; see the server log", upstream=upstream)


async def run(inputs: Inputs, sync: bool, max_features: int, progress: Progress | None = None) -> Result:
    """All sections in parallel. A synchronous run finding more than `max_features` plumes + sources + plots
    raises `AsyncRequired` (its readers stop at that many: the cost is bounded)."""
    chosen = sections(inputs)
    progress = progress or Progress()
    progress.total = len(chosen)
    limit = max_features + 1 if sync else ASYNC_MAX_FEATURES
    statuses: dict[str, dict[str, Any]] = {}

    async def one(section: Section) -> tuple[Section, Any, float]:
        began = time.perf_counter()
        if upstreams.mode(section.upstream) == "disabled":
            outcome: Any = None
        else:
            try:
                outcome = await section.read(inputs, limit)
            except AsyncRequired:
                raise
            except Exception as exc:  # noqa: BLE001 - one section's failure is reported, not raised
                outcome = _as_error(exc, section.upstream)
        progress.finish(section.name)
        return section, outcome, time.perf_counter() - began

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(s)) for s in chosen]
    except* AsyncRequired as caught:
        raise caught.exceptions[0] from None
    body: dict[str, Any] = {}
    features: list[dict[str, Any]] = []
    for task in tasks:
        section, outcome, seconds = task.result()
        block = statuses.setdefault(section.upstream, {"title": upstreams.title(section.upstream), "sections": {}})
        if outcome is None:
            block["sections"][section.name] = {"status": "disabled", "error": f"{block['title']} is not configured"}
        elif isinstance(outcome, errors.GeofedError):
            block["sections"][section.name] = {"status": "failed", **failure(outcome), "seconds": round(seconds, 3)}
        else:
            parts, found = outcome
            body.update(parts)
            features.extend(found)
            block["sections"][section.name] = {"status": "ok", "seconds": round(seconds, 3)}
    for block in statuses.values():
        states = {s["status"] for s in block["sections"].values()}
        block["status"] = states.pop() if len(states) == 1 else "partial"
    if not any(b["status"] in ("ok", "partial") for b in statuses.values()):
        detail = "; ".join(f"{b['title']} ({n}): {s.get('error')}" for b in statuses.values()
                           for n, s in b["sections"].items())
        raise errors.UpstreamError(f"every upstream of the inventory failed: {detail}")
    if sync and summary.feature_count(body) > max_features:
        raise AsyncRequired(f"the area holds more than {max_features} plumes, sources and plots")
    return Result(summary.document(inputs, body, statuses), features)
