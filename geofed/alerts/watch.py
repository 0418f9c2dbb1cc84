"""The watcher: one replica at a time polls every watched collection for what is new since its watermark.

A collection is watched when its source class names the property that says when an item was published:
`watch_field = "published_at"` (read with getattr; nothing else in the source changes). Each poll asks the
source, through geofed's query engine, for its items sorted by that property, newest first — one upstream call
whatever the number of subscriptions, paged further only when a whole page is new — with the TTL cache bypassed
(`fresh_reads`). Calls go through the upstream's `UpstreamClient`, so rate limits and the circuit breaker hold:
an open circuit skips the collection until the next poll.

The watermark is inclusive (items published in the watermark's second are read again); event ids are
idempotency keys, so nothing is enqueued twice. A first poll only sets the watermark (no flood of the archive).
The events and the new watermark are written in one transaction, so a crash or restart between a plume's
appearance and the next poll loses nothing and doubles nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from geofed import cql2, errors, registry, upstreams
from geofed.alerts.notify import collection_channel, envelope, notification, subscription_topic
from geofed.alerts.store import AlertStore, Event
from geofed.http.cache import fresh_reads
from geofed.http.loop import run_async
from geofed.query import FeatureQuery, instant, matcher, rfc3339
from geofed.query.engine import temporal_fields
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)
LEASE = "watcher"
PAGE = 100
MAX_PAGES = 20  # a poll reads at most this many pages (2 000 new items); the rest comes next poll
RETENTION = 30 * 86400.0


@dataclass
class Watched:
    collection: str
    field: str  # the published-time property
    time_field: str | None
    source: Any  # an UpstreamSource
    temporal: set[str] = field(default_factory=set)


def watched_classes(settings: Settings) -> list[type]:
    """The source classes of the enabled upstreams that declare a `watch_field`."""
    return [provider.source_class for name in upstreams.enabled(settings) for provider in registry.get(name).features
            if getattr(provider.source_class, "watch_field", None)]


def watched(settings: Settings) -> list[Watched]:
    out = []
    for cls in watched_classes(settings):
        source = cls(**dict(cls.collection.options or {}))
        time_field = cls.time_field or (cls.time_fields[0] if cls.time_fields else None)
        out.append(Watched(cls.collection.id, cls.watch_field, time_field, source,
                           temporal_fields(source.fields("ogc"))))
    return out


def pubsub_config(config: dict[str, Any], settings: Settings) -> None:
    """pygeoapi's `pubsub` block (the broker URL without credentials: those stay in the environment) and, on
    each watched collection, a `hub` link naming its channel (pygeoapi itself links the broker from `/` only)."""
    from pygeoapi.util import remove_url_auth

    url = remove_url_auth(settings.pubsub_url.get_secret_value()) if settings.pubsub_url else None
    if not url:
        return
    config["pubsub"] = {"name": "MQTT", "broker": {"url": url}}
    for cls in watched_classes(settings):
        resource = config["resources"].get(cls.collection.id)
        if resource is not None:
            resource.setdefault("links", []).append({
                "type": "application/json", "rel": "hub", "href": url,
                "title": f"Pub/Sub broker: new items on MQTT channel {collection_channel(cls.collection.id)}"})


def event_id(subscription: str, collection: str, item_id: str, pubtime: str) -> str:
    return hashlib.sha256("\x1f".join((subscription, collection, item_id, pubtime)).encode()).hexdigest()[:32]


def compile_filter(sub: dict[str, Any]) -> Any:
    text = sub.get("filter")
    if text is None:
        return None
    return cql2.parse_json(text) if isinstance(text, dict) else cql2.parse_text(str(text))


class Watcher:
    def __init__(self, store: AlertStore, settings: Settings, owner: str, collections: list[Watched],
                 collection_channels: bool) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.collections = collections
        self.channels = collection_channels  # publish each new item on collections/<id> too (pubsub on)
        self.interval = max(0.05, float(settings.watch_interval))
        self._matchers: dict[tuple[str, str], Any] = {}

    async def db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                if await self.db(self.store.lease, LEASE, self.owner, time.time(), max(30.0, 3 * self.interval)):
                    await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is away: try again next time
                LOGGER.exception("alerts watcher: poll failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        await self.db(self.store.release, LEASE, self.owner)

    async def poll(self) -> None:
        subs, _ = await self.db(self.store.subscriptions)
        for w in self.collections:
            state = (await self.db(self.store.state, f"watch:{w.collection}")).get(f"watch:{w.collection}")
            value = dict((state or {}).get("value") or {})
            mark = instant(value.get("watermark"))
            try:
                new, newest, at_newest, calls = await self._read(w, mark, set(value.get("seen") or ()))
            except errors.GeofedError as exc:  # breaker open, rate limited, upstream down: next poll
                LOGGER.warning("alerts watcher: %s not polled: %s", w.collection, exc.message)
                continue
            events = [e for feature, pubtime in new for e in self._events(w, feature, pubtime, subs)]
            value.update({"watermark": rfc3339(newest, fraction=True) if newest else None, "seen": sorted(at_newest),
                          "polled": time.time(), "polls": int(value.get("polls", 0)) + 1,
                          "upstream_calls": int(value.get("upstream_calls", 0)) + calls,
                          "items": int(value.get("items", 0)) + len(new)})
            if not await self.db(self.store.commit_poll, f"watch:{w.collection}", value, events,
                                 (LEASE, self.owner)):
                LOGGER.info("alerts watcher: lease lost; another replica watches now")
                return
        if int(time.time()) % 3600 < self.interval:
            await self.db(self.store.prune, time.time() - RETENTION)

    async def _read(self, w: Watched, mark: dt.datetime | None,
                    seen: set[str]) -> tuple[list[tuple[dict[str, Any], str]], Any, set[str], int]:
        """Items published at or after `mark` (but those of `seen`, read at `mark` before), newest first:
        (new items, newest published time, ids published at that time, upstream pages read). Without a `mark`
        (a first poll) nothing is new: the newest time and its ids become the watermark."""
        found: list[tuple[dict[str, Any], str]] = []
        newest, at_newest = mark, set(seen)
        offset, calls = 0, 0
        for _ in range(MAX_PAGES):
            q = FeatureQuery(offset=offset, limit=PAGE, sortby=[(w.field, "desc")])
            with fresh_reads():
                page = await run_async(w.source.query(q))
            calls += 1
            objects = page.objects if page.objects is not None else [w.source.to_feature(r) for r in page.records]
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
                found.append((feature, rfc3339(published, fraction=True) or ""))
            if known or not page.more or len(objects) < PAGE:
                break
            offset += PAGE
        return ([] if mark is None else found), newest, at_newest, calls

    def _matcher(self, w: Watched, sub: dict[str, Any]) -> Any:
        key = (sub["id"], w.collection)
        if key not in self._matchers:
            self._matchers[key] = matcher(intersects=sub.get("geometry"), node=compile_filter(sub),
                                          temporal=w.temporal)
        return self._matchers[key]

    def _events(self, w: Watched, feature: dict[str, Any], pubtime: str, subs: list[dict[str, Any]]) -> list[Event]:
        public = self.settings.public_url
        data = notification(w.collection, feature, w.time_field, pubtime, public)
        now = time.time()
        item_id = str(feature["id"])
        out = []
        if self.channels:
            key = event_id("", w.collection, item_id, pubtime)
            channel = collection_channel(w.collection)
            out.append(Event(key, "", w.collection, item_id, "collection", channel,
                             envelope(key, channel, data, public), created=now, next_try=now))
        for sub in subs:
            if sub.get("collections") and w.collection not in sub["collections"]:
                continue
            try:
                if not self._matcher(w, sub)(feature):
                    continue
            except Exception:  # noqa: BLE001 - a filter that cannot be evaluated on this item does not match
                LOGGER.debug("subscription %s: filter not evaluable on %s", sub["id"], item_id, exc_info=True)
                continue
            key = event_id(sub["id"], w.collection, item_id, pubtime)
            delivery = sub.get("delivery") or {}
            target = str(delivery.get("type") or "pull")
            address = subscription_topic(sub["id"]) if target == "mqtt" else delivery.get("url")
            subject = address or f"subscriptions/{sub['id']}"
            out.append(Event(key, sub["id"], w.collection, item_id, target, address,
                             envelope(key, subject, {**data, "properties": {**data["properties"],
                                                                            "subscription": sub["id"]}}, public),
                             status="stored" if target == "pull" else "pending", created=now, next_try=now,
                             delivered=now if target == "pull" else None))
        return out
