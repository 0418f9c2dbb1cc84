"""The watcher: one replica at a time polls every watched collection for what is new (`collections`).

One upstream search per watched collection and poll, whatever the number of subscriptions: published-time
collections (plumes) are read past their durable watermark; scene collections over the bounding box of the
union of the subscriptions' areas (see `geofed.alerts.collections`). Each new item is then matched against every
subscription locally (area, CQL2 filter) and becomes outbox events: one per matching subscription, plus one on
the collection's own MQTT channel when a broker is configured.

The watermark is inclusive (items published in the watermark's second are read again); event ids are
idempotency keys (subscription, collection, item and its published — for scenes: acquisition — time), so
nothing is enqueued twice. A first poll only sets the watermark (no flood of the archive). The events and the
new watermark are written in one transaction, so a crash or restart between an item's appearance and the next
poll loses nothing and doubles nothing. After a poll that enqueued events the replica's courier is woken.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from geofed import cql2, errors, registry, upstreams
from geofed.alerts.collections import Watched, filter_names, read_area, read_published, union_box, watched
from geofed.alerts.notify import collection_channel, envelope, notification, subscription_topic
from geofed.alerts.store import AlertStore, Event
from geofed.query import instant, matcher, rfc3339
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)
LEASE = "watcher"
RETENTION = 30 * 86400.0
__all__ = ["Watched", "Watcher", "compile_filter", "event_id", "pubsub_config", "watched"]


def watched_classes(settings: Settings) -> list[type]:
    """The source classes of the enabled upstreams that declare a `watch_field` (collections with a pygeoapi
    resource to link the broker from)."""
    return [provider.source_class for name in upstreams.enabled(settings) for provider in registry.get(name).features
            if getattr(provider.source_class, "watch_field", None)]


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
                 collection_channels: bool, wake: Callable[[], None] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.collections = collections
        self.channels = collection_channels  # publish each new item on collections/<id> too (pubsub on)
        self.interval = max(0.05, float(settings.watch_interval))
        self.wake = wake or (lambda: None)
        self._matchers: dict[tuple[str, str], Any] = {}
        self._filters: dict[str, tuple[Any, Any, set[str]]] = {}  # sub id → (filter text, AST, names)

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
        """Every watched collection at once (a slow upstream — a SpaceKnow search pipeline — delays no other),
        each committed on its own."""
        subs, _ = await self.db(self.store.subscriptions)
        states = await self.db(self.store.state, "watch:")
        await asyncio.gather(*(self._poll(w, subs, states) for w in self.collections))
        if int(time.time()) % 3600 < self.interval:
            await self.db(self.store.prune, time.time() - RETENTION)

    async def _poll(self, w: Watched, subs: list[dict[str, Any]], states: dict[str, Any]) -> None:
        name = f"watch:{w.collection}"
        value = dict((states.get(name) or {}).get("value") or {})
        try:
            if w.member is not None and w.names is None:
                await w.fields()  # a member's queryables, to know which subscriptions' filters apply to it
            mine = [s for s in subs if self._applies(s, w)]
            events, calls, items = await (self._area(w, value, mine) if w.areas else
                                          self._published(w, value, mine))
        except errors.GeofedError as exc:  # breaker open, rate limited, upstream down: next poll
            LOGGER.warning("alerts watcher: %s not polled: %s", w.collection, exc.message)
            return
        value.update({"polled": time.time(), "polls": int(value.get("polls", 0)) + 1,
                      "upstream_calls": int(value.get("upstream_calls", 0)) + calls,
                      "items": int(value.get("items", 0)) + items})
        if not await self.db(self.store.commit_poll, name, value, events, (LEASE, self.owner)):
            LOGGER.info("alerts watcher: lease lost; another replica watches now")
        elif events:
            self.wake()

    async def _published(self, w: Watched, value: dict[str, Any],
                         subs: list[dict[str, Any]]) -> tuple[list[Event], int, int]:
        joined = bool(w.joins) and any(w.joins & self._filter(s)[2] for s in subs)
        new, newest, at_newest, calls = await read_published(w, instant(value.get("watermark")),
                                                             set(value.get("seen") or ()), joined)
        events = []
        for feature in new:
            pubtime = rfc3339(instant((feature.get("properties") or {}).get(w.field)), fraction=True) or ""
            events += self._events(w, feature, pubtime, pubtime, subs)
        value.update({"watermark": rfc3339(newest, fraction=True) if newest else None, "seen": sorted(at_newest)})
        return events, calls, len(new)

    async def _area(self, w: Watched, value: dict[str, Any],
                    subs: list[dict[str, Any]]) -> tuple[list[Event], int, int]:
        if not subs:  # nobody asks for this collection's scenes: no upstream call
            value.update({"area": None, "seen": []})
            return [], 0, 0
        box = union_box([s["geometry"] for s in subs])
        now = dt.datetime.now(dt.UTC)
        found, calls = await read_area(w, box, now)
        before = value.get("area")
        inside = matcher(bbox=tuple(before)) if before else None
        seen = set(value.get("seen") or ())
        pubtime = rfc3339(now, fraction=True) or ""  # scenes: when geofed first listed it
        events, new = [], 0
        for item in found:
            if str(item.get("id")) in seen or inside is None or not inside(item):
                continue
            new += 1
            stamp = rfc3339(instant((item.get("properties") or {}).get(w.field)), fraction=True) or ""
            events += self._events(w, item, pubtime, stamp, subs)
        value.update({"area": list(box), "seen": sorted({str(i.get("id")) for i in found}),
                      "watermark": value.get("watermark") if not new else pubtime})
        return events, calls, new

    def _filter(self, sub: dict[str, Any]) -> tuple[Any, Any, set[str]]:
        cached = self._filters.get(sub["id"])
        if cached is None or cached[0] != sub.get("filter"):
            node = compile_filter(sub)
            cached = self._filters[sub["id"]] = (sub.get("filter"), node, filter_names(sub, node))
        return cached

    def _applies(self, sub: dict[str, Any], w: Watched) -> bool:
        """A subscription listing collections applies to those; one that does not, to every watched collection
        whose queryables include every property its filter names."""
        listed = sub.get("collections")
        if listed:
            return w.collection in listed
        names = self._filter(sub)[2]
        return not names or w.knows(names)

    def _matcher(self, w: Watched, sub: dict[str, Any]) -> Any:
        key = (sub["id"], w.collection)
        if key not in self._matchers:
            self._matchers[key] = matcher(intersects=sub.get("geometry"), node=self._filter(sub)[1],
                                          temporal=w.temporal)
        return self._matchers[key]

    def _events(self, w: Watched, feature: dict[str, Any], pubtime: str, stamp: str,
                subs: list[dict[str, Any]]) -> list[Event]:
        """The events of one new item; `stamp` (its published or acquisition time) goes into the keys."""
        public = self.settings.public_url
        data = notification(w.collection, feature, w.time_field, pubtime, public, ogc=w.member is None)
        now = time.time()
        item_id = str(feature["id"])
        out = []
        if self.channels:
            key = event_id("", w.collection, item_id, stamp)
            channel = collection_channel(w.collection)
            out.append(Event(key, "", w.collection, item_id, "collection", channel,
                             envelope(key, channel, data, public), created=now, next_try=now))
        for sub in subs:
            try:
                if not self._matcher(w, sub)(feature):
                    continue
            except Exception:  # noqa: BLE001 - a filter that cannot be evaluated on this item does not match
                LOGGER.debug("subscription %s: filter not evaluable on %s", sub["id"], item_id, exc_info=True)
                continue
            key = event_id(sub["id"], w.collection, item_id, stamp)
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
