"""What the watcher watches and how it reads each collection: one upstream search per collection and poll.

Two kinds of watched collection, found through the registry (geofed never imports `providers/` or `stac_bridge/`):

- **published** (CarbonMapper plumes): a feature source class naming the property that says when an item was
  published, `watch_field = "published_at"` (read with getattr). Each poll asks the source, through geofed's
  query engine, for its items sorted by that property, newest first — the whole collection, not only the
  subscriptions' areas, since the collection channel announces every new item — with the TTL cache bypassed
  (`fresh_reads`). `watch_options` (constructor keyword arguments, e.g. `{"link_sources": False}`: no
  `sources.geojson` join for plume → source links) make that read one call; while a subscription's filter names
  one of `watch_joins` (`source_name`), the collection's default options are used instead, so the filter applies.
- **areas** (scenes): a feature source class with `watch_field` (the acquisition time) and `watch_areas = True`
  (SpaceKnow scenes), or a STAC member's collection named in `GEOFED_WATCH_SCENES` (Sentinel Hub, e.g.
  `sentinelhub:sentinel-2-l2a`, searched through the member's own `search`). Scenes have no publication time and
  appear upstream hours after their acquisition, so each poll makes one search over the bounding box of the
  union of the areas that subscriptions to that collection name, for scenes acquired in the last
  `LOOKBACK`; a scene is new when the previous poll did not list it although it lay in the previous poll's box
  (a subscription that widens the box does not receive the archive of its area). No subscription: no search.

Calls go through the upstream's `UpstreamClient` (on the upstream loop), so rate limits and the circuit breaker
hold; a failure skips the collection until the next poll.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from geofed import cql2, registry, upstreams
from geofed.http.cache import fresh_reads
from geofed.http.loop import run_async
from geofed.query import BBox, Face, FeatureQuery, geometry_bounds, instant
from geofed.query.engine import OWN_MEMBERS, temporal_fields
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)
PAGE = 100
MAX_PAGES = 20  # a poll reads at most this many pages (2 000 items); the rest comes next poll
LOOKBACK = dt.timedelta(days=3)  # how late after its acquisition a scene may appear upstream and still alert


@dataclass
class AreaSearch:
    """What a STAC member's `search` reads: the fields of `stac_bridge.member.SearchParams` (duck-typed)."""

    collections: list[str]
    bbox: BBox
    start: dt.datetime
    limit: int = PAGE
    end: dt.datetime | None = None
    ids: list[str] | None = None
    intersects: dict[str, Any] | None = None
    filter: Any | None = None
    filter_raw: Any | None = None
    filter_lang: str | None = None
    sortby: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Watched:
    collection: str
    field: str  # the published time (published) or the acquisition time (areas)
    time_field: str | None
    source: Any = None  # an UpstreamSource (built with `watch_options`), or None for a member's collection
    member: Any = None  # a STAC federation member
    areas: bool = False
    joined: Any = None  # the source with the collection's default options (see `watch_joins`)
    joins: frozenset[str] = frozenset()
    names: set[str] | None = None  # what a subscription's filter may name (a member's: read on first use)
    temporal: set[str] = field(default_factory=set)

    @property
    def face(self) -> Face:
        return "stac" if self.member is not None else "ogc"

    async def fields(self) -> dict[str, dict[str, Any]]:
        """The queryables a subscription's filter may name (a member's come from its upstream, cached)."""
        if self.member is None:
            return dict(self.source.fields("ogc"))
        found = dict(await run_async(self.member.queryables(self.collection)))
        self.names = set(found) | OWN_MEMBERS["stac"]
        self.temporal = temporal_fields(found) | {"datetime"}
        return found

    def knows(self, names: set[str]) -> bool:
        return self.names is not None and names <= self.names


def _build(cls: type, extra: dict[str, Any]) -> Any:
    return cls(**{**dict(cls.collection.options or {}), **extra})


def watched(settings: Settings) -> list[Watched]:
    """The watched collections of the enabled upstreams."""
    out: list[Watched] = []
    scenes = [c.strip() for c in (settings.watch_scenes or "").split(",") if c.strip()]
    for name in upstreams.enabled(settings):
        upstream = registry.get(name)
        for provider in upstream.features:
            cls = provider.source_class
            if not getattr(cls, "watch_field", None):
                continue
            source = _build(cls, dict(getattr(cls, "watch_options", {}) or {}))
            fields = source.fields("ogc")
            out.append(Watched(cls.collection.id, cls.watch_field, cls.time_field or (cls.time_fields or [None])[0],
                               source, areas=bool(getattr(cls, "watch_areas", False)),
                               joins=frozenset(getattr(cls, "watch_joins", ())),
                               names=set(fields) | OWN_MEMBERS["ogc"], temporal=temporal_fields(fields)))
        if scenes and upstream.members is not None:
            try:
                members = upstream.members()
            except Exception:
                LOGGER.exception("alerts: the STAC members of %s could not be built; their scenes are not watched",
                                 name)
                continue
            for cid in scenes:
                member = next((m for m in members if m.owns(cid)), None)
                if member is not None and not any(w.collection == cid for w in out):
                    out.append(Watched(cid, "datetime", "datetime", member=member, areas=True))
    return out


def filter_names(sub: dict[str, Any], node: Any) -> set[str]:
    return cql2.attributes(node) if node is not None and sub.get("filter") is not None else set()


async def read_published(w: Watched, mark: dt.datetime | None, seen: set[str], joined: bool,
                         ) -> tuple[list[dict[str, Any]], Any, set[str], int]:
    """Items published at or after `mark` (but those of `seen`, read at `mark` before), newest first:
    (new items, newest published time, ids published at that time, upstream pages read). Without a `mark`
    (a first poll) nothing is new: the newest time and its ids become the watermark."""
    source = w.source
    if joined:
        if w.joined is None:
            w.joined = _build(type(w.source), {})
        source = w.joined
    found: list[dict[str, Any]] = []
    newest, at_newest = mark, set(seen)
    offset, calls = 0, 0
    for _ in range(MAX_PAGES):
        q = FeatureQuery(offset=offset, limit=PAGE, sortby=[(w.field, "desc")])
        with fresh_reads():
            page = await run_async(source.query(q))
        calls += 1
        objects = page.objects if page.objects is not None else [source.to_feature(r) for r in page.records]
        known = False  # reached what an earlier poll saw: older items, or this second's known ones
        for feature in objects:
            published = instant((feature.get("properties") or {}).get(w.field))
            if published is None:
                continue
            item_id = str(feature.get("id"))
            if mark is not None and (published < mark or (published == mark and item_id in seen)):
                known = True
                continue
            if newest is not None and published < newest and mark is None:
                known = True  # a first poll: past the newest second
                break
            if newest is None or published > newest:
                newest, at_newest = published, set()
            if published == newest:
                at_newest.add(item_id)
            found.append(feature)
        if known or not page.more or len(objects) < PAGE:
            break
        offset += PAGE
    return ([] if mark is None else found), newest, at_newest, calls


def union_box(geometries: list[dict[str, Any]]) -> BBox:
    boxes = [geometry_bounds(g) for g in geometries]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


async def read_area(w: Watched, box: BBox, now: dt.datetime) -> tuple[list[dict[str, Any]], int]:
    """The scenes acquired in the last LOOKBACK over `box` (features, or STAC items for a member), upstream pages
    read. One search; further pages only when the first is full."""
    since = now - LOOKBACK
    found: list[dict[str, Any]] = []
    calls = 0
    state: Any = None
    for index in range(MAX_PAGES):
        with fresh_reads():
            if w.member is not None:
                page = await run_async(w.member.search(AreaSearch([w.collection], box, since), state))
                objects, more, state = list(page.items), page.next is not None, page.next
            else:
                q = FeatureQuery(offset=index * PAGE, limit=PAGE, bbox=box, start=since, sortby=[(w.field, "desc")])
                result = await run_async(w.source.query(q))
                objects = result.objects if result.objects is not None else [
                    w.source.to_feature(r) for r in result.records]
                more = bool(result.more) and len(objects) >= PAGE
        calls += 1
        found.extend(objects)
        if not more:
            break
    return found, calls
