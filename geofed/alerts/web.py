"""The alerts face: `/subscriptions*`, `/alerts` (the watcher's state), and the watcher + courier lifespan.

    POST   /subscriptions              {"geometry" | "bbox", "filter"?, "collections"?, "delivery"?, "title"?}
    GET    /subscriptions              the caller's subscriptions (paged: limit, offset)
    GET    /subscriptions/{id}         one, with delivery counts and its dead letters
    DELETE /subscriptions/{id}
    GET    /subscriptions/{id}/events  its events, newest first (paged) — with or without a broker
    GET    /alerts                     watched collections, watermarks, polls; the MQTT channels

`delivery` is `{"type": "pull"}` (the default: events only), `{"type": "mqtt"}` (topic
`subscriptions/<id>` on GEOFED_PUBSUB_URL) or `{"type": "webhook", "url": ...}` (signed; the secret is in the
creation answer only). With `GEOFED_API_KEYS` set, every route but `/alerts` needs a key (401 without, 403 with a
wrong one) and a subscription is visible to its key only (404 otherwise) — the jobs' rules (`geofed.jobs.access`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from geofed import errors
from geofed.alerts.collections import Watched, filter_names, watched
from geofed.alerts.deliver import Courier
from geofed.alerts.notify import Publisher, collection_channel, subscription_topic
from geofed.alerts.store import AlertStore, Event
from geofed.alerts.watch import Watcher, compile_filter
from geofed.alerts.webhook import AllowList
from geofed.errordocs import error_response
from geofed.jobs.access import Caller, KeyRing, presented_key
from geofed.jobs.engine import instance_id
from geofed.jobs.store import iso, open_store
from geofed.query import parse_bbox, parse_geometry
from geofed.query.engine import check_names
from geofed.settings import Settings

MAX_FILTER = 4000  # characters: parsers are bounded before they run (deep filters crash or recurse)
MAX_LIMIT = 1000
Handler = Callable[[Request], Awaitable[Response]]


class NoSuchSubscription(errors.NotFound):
    code = "NoSuchSubscription"


def broker_url(settings: Settings) -> str | None:
    return settings.pubsub_url.get_secret_value() if settings.pubsub_url else None


class AlertsFace:
    def __init__(self, settings: Settings, store: Callable[[], AlertStore], collections: list[Watched]) -> None:
        self.settings = settings
        self._store = store
        self.collections = {w.collection: w for w in collections}
        self.keys = KeyRing(settings.api_key_list())
        self.allow = AllowList(settings.webhook_allow)

    @property
    def store(self) -> AlertStore:
        return self._store()

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _caller(self, request: Request) -> Caller:
        caller = self.keys.identify(presented_key({k.lower(): v for k, v in request.headers.items()}))
        if caller.keys_enabled and caller.key_hash is None:
            raise errors.Unauthorized("subscriptions need an API key: send it in the X-API-Key header")
        return caller

    async def _visible(self, request: Request, caller: Caller) -> dict[str, Any]:
        sub_id = request.path_params["sub_id"]
        sub = await self.db(self.store.subscription, sub_id)
        if sub is None or not caller.may_see(sub["owner"]):
            raise NoSuchSubscription(f"no subscription {sub_id}")
        return sub

    def _url(self, sub_id: str = "") -> str:
        return f"{self.settings.public_url}/subscriptions" + (f"/{sub_id}" if sub_id else "")

    def _doc(self, sub: dict[str, Any], counts: dict[str, int] | None = None,
             dead: list[Event] | None = None) -> dict[str, Any]:
        delivery = dict(sub.get("delivery") or {"type": "pull"})
        if delivery["type"] == "mqtt":
            delivery["topic"] = subscription_topic(sub["id"])
            url = broker_url(self.settings)
            if url:
                from pygeoapi.util import remove_url_auth

                delivery["broker"] = remove_url_auth(url)
        doc = {k: sub[k] for k in ("id", "title", "geometry", "filter", "collections") if sub.get(k) is not None}
        doc.update({"delivery": delivery, "created": iso(sub["created"]), "links": [
            {"rel": "self", "type": "application/json", "href": self._url(sub["id"])},
            {"rel": "items", "type": "application/json", "title": "events",
             "href": self._url(sub["id"]) + "/events"}]})
        if counts is not None:
            doc["deliveries"] = {s: counts.get(s, 0) for s in ("pending", "delivered", "dead", "stored")}
        if dead is not None:
            doc["deadLetters"] = [_event_doc(e, message=False) for e in dead]
        return doc

    def _page(self, request: Request) -> tuple[int, int]:
        def integer(name: str, default: int, high: int) -> int:
            raw = request.query_params.get(name) or str(default)
            try:
                value = int(raw)
            except ValueError:
                raise errors.InvalidParameter(f"{name} must be an integer", parameter=name) from None
            if not 0 <= value <= high:
                raise errors.InvalidParameter(f"{name} must be between 0 and {high}", parameter=name)
            return value

        return max(1, integer("limit", 10, MAX_LIMIT)), integer("offset", 0, 10**9)

    def _links(self, url: str, limit: int, offset: int, shown: int, matched: int) -> list[dict[str, Any]]:
        links = [{"rel": "self", "type": "application/json",
                  "href": f"{url}?{urlencode({'limit': limit, 'offset': offset})}"}]
        if offset + shown < matched:
            links.append({"rel": "next", "type": "application/json",
                          "href": f"{url}?{urlencode({'limit': limit, 'offset': offset + limit})}"})
        if offset > 0:
            links.append({"rel": "prev", "type": "application/json",
                          "href": f"{url}?{urlencode({'limit': limit, 'offset': max(0, offset - limit)})}"})
        return links

    async def _input(self, request: Request) -> tuple[dict[str, Any], str | None]:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise errors.InvalidParameter("the body must be a JSON object", parameter="body") from None
        if not isinstance(body, dict):
            raise errors.InvalidParameter("the body must be a JSON object", parameter="body")
        geometry = parse_geometry(body.get("geometry"), "geometry")
        box = parse_bbox(body.get("bbox")) if geometry is None else None
        if box is not None:
            w, s, e, n = box
            geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        if geometry is None:
            raise errors.InvalidParameter("a subscription needs an area: 'geometry' (GeoJSON) or 'bbox'",
                                          parameter="geometry")
        collections = body.get("collections") or None
        if collections is not None:
            if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
                raise errors.InvalidParameter("'collections' must be a list of collection ids", parameter="collections")
            unknown = sorted(set(collections) - set(self.collections))
            if unknown:
                raise errors.InvalidParameter(f"not watched for alerts: {', '.join(unknown)}; watched: "
                                              f"{', '.join(self.collections) or 'none'}", parameter="collections")
        flt = body.get("filter")
        if flt is not None:
            if len(json.dumps(flt)) > MAX_FILTER:
                raise errors.InvalidParameter(f"'filter' is longer than {MAX_FILTER} characters", parameter="filter")
            node = compile_filter({"filter": flt})
            if collections:
                for cid in collections:
                    w = self.collections[cid]
                    check_names(node, await w.fields(), w.face, cid)
            else:  # the subscription applies to the watched collections that have what the filter names
                names = filter_names({"filter": flt}, node)
                for w in self.collections.values():
                    if names and w.names is None:
                        with suppress(errors.GeofedError):  # a member's upstream is away: not for it now
                            await w.fields()
                if names and not any(w.knows(names) for w in self.collections.values()):
                    raise errors.InvalidParameter(
                        f"no watched collection has every property the filter names ({', '.join(sorted(names))});"
                        " see each collection's queryables", parameter="filter")
        delivery = body.get("delivery") or {"type": "pull"}
        kind = delivery.get("type") if isinstance(delivery, dict) else None
        secret = None
        if kind == "mqtt":
            if not self.settings.pubsub_url:
                raise errors.InvalidParameter("MQTT delivery is off on this server (GEOFED_PUBSUB_URL is not set);"
                                              " use a webhook or pull", parameter="delivery")
            delivery = {"type": "mqtt"}
        elif kind == "webhook":
            await self.allow.check(str(delivery.get("url") or ""))
            delivery = {"type": "webhook", "url": str(delivery["url"])}
            secret = secrets.token_urlsafe(32)
        elif kind == "pull":
            delivery = {"type": "pull"}
        else:
            raise errors.InvalidParameter("'delivery.type' must be pull, mqtt or webhook", parameter="delivery")
        title = body.get("title")
        doc = {"title": str(title)[:200] if title else None, "geometry": geometry, "filter": flt,
               "collections": collections, "delivery": delivery}
        return doc, secret

    # ------------------------------------------------------------------ routes
    async def create(self, request: Request) -> Response:
        caller = self._caller(request)
        doc, secret = await self._input(request)
        sub_id = uuid.uuid4().hex
        await self.db(self.store.add_subscription, sub_id, caller.key_hash, doc, secret)
        sub = await self.db(self.store.subscription, sub_id)
        body = self._doc(sub, {}, [])
        if secret:
            body["delivery"]["secret"] = secret  # shown once: the receiver verifies signatures with it
        return JSONResponse(body, status_code=201, headers={"Location": self._url(sub_id)})

    async def list(self, request: Request) -> Response:
        caller = self._caller(request)
        limit, offset = self._page(request)
        subs, matched = await self.db(self.store.subscriptions, caller.owner_filter, limit, offset)
        return JSONResponse({"subscriptions": [self._doc(s) for s in subs], "numberMatched": matched,
                             "numberReturned": len(subs),
                             "links": self._links(self._url(), limit, offset, len(subs), matched)})

    async def one(self, request: Request) -> Response:
        sub = await self._visible(request, self._caller(request))
        if request.method == "DELETE":
            await self.db(self.store.delete_subscription, sub["id"])
            return Response(status_code=204)
        counts, dead = await asyncio.gather(self.db(self.store.counts, sub["id"]), self.db(self.store.dead, sub["id"]))
        return JSONResponse(self._doc(sub, counts, dead))

    async def events(self, request: Request) -> Response:
        sub = await self._visible(request, self._caller(request))
        limit, offset = self._page(request)
        events, matched = await self.db(self.store.events, sub["id"], limit, offset)
        return JSONResponse({"events": [_event_doc(e) for e in events], "numberMatched": matched,
                             "numberReturned": len(events),
                             "links": self._links(self._url(sub["id"]) + "/events", limit, offset, len(events),
                                                  matched)})

    async def status(self, request: Request) -> Response:
        state = await self.db(self.store.state)
        lease = state.get("watcher") or {}
        body: dict[str, Any] = {
            "interval": self.settings.watch_interval,
            "watcher": {"leaseUntil": iso(lease.get("until")), "active": lease.get("owner") is not None},
            "collections": {cid: _watch_doc((state.get(f"watch:{cid}") or {}).get("value") or {}, w)
                            for cid, w in self.collections.items()},
            "webhooks": self.allow.enabled,
        }
        url = broker_url(self.settings)
        if url:
            from pygeoapi.util import remove_url_auth

            body["pubsub"] = {"broker": remove_url_auth(url), "channels": [
                collection_channel(c) for c in self.collections], "asyncapi": f"{self.settings.public_url}/asyncapi"}
        return JSONResponse(body)

    def routes(self) -> list[BaseRoute]:
        def guarded(fn: Handler) -> Handler:
            async def handle(request: Request) -> Response:
                try:
                    return await fn(request)
                except errors.GeofedError as exc:
                    response = error_response(exc)
                    if isinstance(exc, errors.Unauthorized):
                        response.headers["WWW-Authenticate"] = 'ApiKey header="X-API-Key"'
                    return response

            return handle

        return [
            Route("/subscriptions", guarded(self.create), methods=["POST"]),
            Route("/subscriptions", guarded(self.list), methods=["GET"]),
            Route("/subscriptions/{sub_id}", guarded(self.one), methods=["GET", "DELETE"]),
            Route("/subscriptions/{sub_id}/events", guarded(self.events), methods=["GET"]),
            Route("/alerts", guarded(self.status), methods=["GET"]),
        ]


def _watch_doc(value: dict[str, Any], w: Watched) -> dict[str, Any]:
    doc = {"field": w.field, "watermark": value.get("watermark"), "polled": iso(value.get("polled")),
           "polls": value.get("polls", 0), "upstreamPages": value.get("upstream_calls", 0),
           "items": value.get("items", 0)}
    if w.areas:  # scenes: searched over the subscriptions' areas
        doc["area"] = value.get("area")
    return doc


def _event_doc(event: Event, message: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": event.id, "collection": event.collection, "item": event.item_id,
                           "status": event.status, "attempts": event.attempts, "created": iso(event.created),
                           "delivered": iso(event.delivered), "lastError": event.last_error}
    if message:
        doc["message"] = json.loads(event.message)
    return doc


def extension(settings: Settings) -> dict[str, Any]:
    connection = (settings.database_url.get_secret_value() if settings.database_url
                  else str(settings.data_dir.resolve() / "jobs.sqlite"))  # the job store's (same as the manager)
    holder: dict[str, AlertStore] = {}

    def store() -> AlertStore:
        if "store" not in holder:
            holder["store"] = AlertStore(open_store(connection))
        return holder["store"]

    collections = watched(settings)
    face = AlertsFace(settings, store, collections)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(store)  # open and migrate before the first request
        owner = instance_id()
        url = broker_url(settings)
        publisher = Publisher(url, owner) if url else None
        courier = Courier(store(), settings, owner, publisher)
        watcher = Watcher(store(), settings, owner, collections, collection_channels=publisher is not None,
                          wake=courier.wake.set)
        tasks = [asyncio.create_task(watcher.run(), name="geofed-alerts-watcher"),
                 asyncio.create_task(courier.run(), name="geofed-alerts-courier")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with suppress(Exception):
                await watcher.stop()  # the next replica (or our restart) takes over at once
            await courier.close()
            if publisher is not None:
                await asyncio.to_thread(publisher.close)

    return {"routes": face.routes(), "lifespan": lifespan}
