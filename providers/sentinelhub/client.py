"""Sentinel Hub HTTP access: OAuth2 client credentials, one method per endpoint used, and the Catalog (STAC API)
client with the rules the upstream imposes. HTTP and auth only: everything returned is the upstream's JSON
unchanged (`records.py` maps it).

Contract: `../shared/upstreams/sentinelhub.md`, `docs/sentinelhub-api.txt` and `observed.md` (token URL, form
grant, Retry-After in milliseconds, `/api/v1/statistics`). Every call goes through the shared `UpstreamClient`
(retries, Retry-After, token refresh, cache, breaker).

Endpoints: "Make sure to use the appropriate end-point for each of the datasets, e.g. for Landsat, Sentinel-3"
(doc): every Catalog and Statistical API call about a collection goes to that collection's deployment
(`Endpoints`: the default table below, overridden by GEOFED_SENTINELHUB_COLLECTION_URLS); the collection listing
is the union of the deployments' listings, each collection taken from the deployment it is routed to.

Catalog rules (digest §2.3, §3), kept here once:
- exactly one collection per search;
- `datetime` is required: when the caller gives none, the collection's temporal extent is sent;
- `limit` is 1..100 (larger asks are clamped); paging continues with the integer `context.next`
  (POST body `{"next": N}`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from geofed import errors, upstreams
from geofed.http.auth import Auth, ClientCredentials
from geofed.http.client import RetryOn, UpstreamClient
from geofed.query import rfc3339
from geofed.settings import Settings, get_settings

LOGGER = logging.getLogger("geofed.sentinelhub")

NAME = "sentinelhub"
TITLE = "Sentinel Hub"
# Sentinel Hub's 429 answers carry Retry-After in milliseconds (observed.md), not seconds.
POLICY: dict[str, Any] = {"retry_after_unit": "ms"}
CATALOG = "/api/v1/catalog/1.0.0"
STATISTICS = "/api/v1/statistics"
# Used when a token response has no `expires_in` (observed: "a JWT valid about one hour").
DEFAULT_TOKEN_TTL = 3600.0
MAX_LIMIT = 100  # the Catalog's largest `limit`
# A Statistical API call spends processing units: it is sent again only where the upstream said it did not
# process it (429 or 503 *with* Retry-After, or no connection at all) — never after a timeout or a bare 5xx.
# The doc is silent on which answers mean "not processed"; this is the conservative reading.
NOT_PROCESSED = RetryOn(frozenset({429, 503}), needs_retry_after=True, connect_errors=True)

# The deployment of each collection that is not on the main one (Sentinel Hub's data documentation, "endpoint
# locations"; the API doc only says to use the appropriate end-point per dataset). Used only when
# GEOFED_SENTINELHUB_URL is the main deployment: another base URL (a simulator, Copernicus Data Space's single
# host) serves every collection itself unless GEOFED_SENTINELHUB_COLLECTION_URLS says otherwise.
MAIN_DEPLOYMENT = "https://services.sentinel-hub.com"
US_WEST = "https://services-uswest2.sentinel-hub.com"
CREODIAS = "https://creodias.sentinel-hub.com"
DEFAULT_COLLECTION_URLS: dict[str, str] = {
    **dict.fromkeys(("landsat-ot-l1", "landsat-ot-l2", "landsat-etm-l1", "landsat-etm-l2", "landsat-tm-l1",
                     "landsat-tm-l2", "landsat-mss-l1", "hls", "modis"), US_WEST),
    **dict.fromkeys(("sentinel-3-olci", "sentinel-3-olci-l2", "sentinel-3-slstr", "sentinel-3-syn-l2",
                     "sentinel-5p-l2"), CREODIAS),
}


def make_auth(settings: Settings) -> Auth:
    creds = upstreams.credentials(NAME, settings)
    client_id, secret = creds.get("client_id"), creds.get("client_secret")
    if not client_id or not secret:
        return Auth()  # no credentials configured: calls go out anonymously and the upstream's 401 says why
    # One token serves every call until shortly before it expires: the token endpoint is itself rate limited.
    return ClientCredentials(upstreams.aux_url(NAME, "token_url", settings), client_id, secret,
                             margin=settings.token_refresh_margin, default_ttl=DEFAULT_TOKEN_TTL)


def parse_collection_urls(value: str | None) -> dict[str, str]:
    """GEOFED_SENTINELHUB_COLLECTION_URLS: a JSON object or `id=url,id=url`; a malformed value is one clear error."""
    text = (value or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            table = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"GEOFED_SENTINELHUB_COLLECTION_URLS is not valid JSON: {exc}") from None
    else:
        pairs = [part.partition("=") for part in text.split(",") if part.strip()]
        if any(not sep or not key.strip() or not url.strip() for key, sep, url in pairs):
            raise ValueError("GEOFED_SENTINELHUB_COLLECTION_URLS must be JSON or 'collection=url,...'")
        table = {key.strip(): url.strip() for key, _, url in pairs}
    if not isinstance(table, dict) or not all(isinstance(v, str) and v.startswith(("http://", "https://"))
                                              for v in table.values()):
        raise ValueError("GEOFED_SENTINELHUB_COLLECTION_URLS must map collection ids to http(s) URLs")
    return {str(key): url.rstrip("/") for key, url in table.items()}


@dataclass(frozen=True)
class Endpoints:
    """The base URL of each collection's deployment (`default` for collections the table does not name)."""

    default: str
    table: dict[str, str] = field(default_factory=dict)

    @classmethod
    def configured(cls, base_url: str, settings: Settings | None = None) -> Endpoints:
        settings = settings or get_settings()
        base = base_url.rstrip("/")
        table = dict(DEFAULT_COLLECTION_URLS) if base == MAIN_DEPLOYMENT else {}
        table.update(parse_collection_urls(settings.sentinelhub_collection_urls))
        return cls(base, {key: url for key, url in table.items() if url != base})

    def url(self, collection_id: str) -> str:
        return self.table.get(collection_id, self.default)

    def deployments(self) -> list[str]:
        return list(dict.fromkeys([self.default, *self.table.values()]))


class SentinelHubClient:
    """One async method per Sentinel Hub endpoint geofed uses, each sent to its collection's deployment."""

    def __init__(self, http: UpstreamClient | None = None, endpoints: Endpoints | None = None) -> None:
        self.http = http or upstreams.http(NAME)
        self.endpoints = endpoints or Endpoints.configured(self.http.base_url)

    def _catalog(self, collection_id: str) -> str:
        return f"{self.endpoints.url(collection_id)}{CATALOG}/collections/{quote(collection_id, safe='')}"

    # Catalog reads are cached (GEOFED_CACHE_TTL); searches are POSTs that are safe to retry.
    async def collections(self, deployment: str) -> dict[str, Any]:
        return await self.http.get_json(f"{deployment}{CATALOG}/collections", cache=True)

    async def collection(self, collection_id: str) -> dict[str, Any]:
        return await self.http.get_json(self._catalog(collection_id), cache=True)

    async def queryables(self, collection_id: str) -> dict[str, Any]:
        return await self.http.get_json(f"{self._catalog(collection_id)}/queryables", cache=True)

    async def item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        return await self.http.get_json(f"{self._catalog(collection_id)}/items/{quote(item_id, safe='')}",
                                        cache=True)

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /search (one collection, `datetime` required upstream; see `Catalog`)."""
        root = self.endpoints.url(body["collections"][0])
        return await self.http.post_json(f"{root}{CATALOG}/search", json=body, idempotent=True)

    async def statistics(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST /api/v1/statistics at the deployment of `input.data[0].type`. It spends processing units, so it
        is retried only where the upstream said it did not process it (`NOT_PROCESSED`)."""
        root = self.endpoints.url(str(request["input"]["data"][0]["type"]))
        return await self.http.post_json(f"{root}{STATISTICS}", json=request, idempotent=False,
                                         retry_on=NOT_PROCESSED, timeout=120)


# ----------------------------------------------------------------- the Catalog (STAC API) client
@dataclass
class SearchRequest:
    collection: str  # native id, e.g. sentinel-2-l2a
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    intersects: dict[str, Any] | None = None
    ids: list[str] | None = None
    filter: str | dict[str, Any] | None = None  # CQL2 text or JSON, sent as is (`stac.py` decides what fits)
    filter_lang: str | None = None
    fields: dict[str, list[str]] | None = None  # {"include": [...], "exclude": [...]}
    limit: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchPage:
    records: list[dict[str, Any]]  # upstream items, unchanged
    next: int | None  # the upstream's `context.next`; None when there is no further page


def clamp_limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


class Catalog:
    """The Sentinel Hub Catalog with its rules applied; ids are native (`sentinel-2-l2a`), answers raw JSON."""

    def __init__(self, client: SentinelHubClient | None = None) -> None:
        self.client = client or SentinelHubClient()

    async def collections(self) -> list[dict[str, Any]]:
        """Every deployment's collections, each from the deployment it is routed to. A deployment that fails is
        left out (logged) as long as another answered: one region's outage hides only its own collections."""
        endpoints = self.client.endpoints
        roots = endpoints.deployments()
        answers = await asyncio.gather(*(self.client.collections(root) for root in roots), return_exceptions=True)
        found: dict[str, dict[str, Any]] = {}
        failures = [a for a in answers if isinstance(a, BaseException)]
        for failure in failures:
            if not isinstance(failure, Exception):  # cancellation and the like are not an outage
                raise failure
        if len(failures) == len(answers):
            raise failures[0]
        for root, answer in zip(roots, answers, strict=True):
            if isinstance(answer, BaseException):
                LOGGER.warning("%s deployment %s did not list its collections: %s", TITLE, root, answer)
                continue
            for record in answer.get("collections") or []:
                if endpoints.url(str(record.get("id"))) == root:
                    found.setdefault(record["id"], record)
        return list(found.values())

    async def collection(self, collection: str) -> dict[str, Any]:
        try:
            return await self.client.collection(collection)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"collection '{collection}' does not exist at {TITLE}", upstream=NAME) from None

    async def queryables(self, collection: str) -> dict[str, Any]:
        try:
            payload = await self.client.queryables(collection)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"collection '{collection}' does not exist at {TITLE}", upstream=NAME) from None
        return dict(payload.get("properties") or {})

    async def item(self, collection: str, item_id: str) -> dict[str, Any]:
        try:
            return await self.client.item(collection, item_id)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"item '{item_id}' does not exist in {TITLE} collection '{collection}'",
                                  upstream=NAME) from None

    async def search(self, request: SearchRequest, next_token: int | None = None) -> SearchPage:
        """One upstream page (at most 100 items)."""
        body = await self.body(request, next_token)
        try:
            payload = await self.client.search(body)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"collection '{request.collection}' does not exist at {TITLE}",
                                  upstream=NAME) from None
        found = list(payload.get("features") or [])
        nxt = (payload.get("context") or {}).get("next")
        if nxt is not None and not isinstance(nxt, int):
            raise errors.UpstreamError(f"{TITLE} returned a non-integer paging token", upstream=NAME)
        return SearchPage(found, nxt if found else None)

    async def body(self, request: SearchRequest, next_token: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "collections": [request.collection],
            "datetime": await self._datetime(request),
            "limit": clamp_limit(request.limit),
        }
        if request.bbox is not None:
            body["bbox"] = list(request.bbox)
        if request.intersects is not None:
            body["intersects"] = request.intersects
        if request.ids:
            body["ids"] = list(request.ids)
        if request.filter not in (None, "", {}):
            body["filter"] = request.filter
            body["filter-lang"] = request.filter_lang or (
                "cql2-json" if isinstance(request.filter, dict) else "cql2-text"
            )
        if request.fields:
            body["fields"] = request.fields
        if next_token is not None:
            body["next"] = next_token
        body.update(request.extra)
        return body

    async def _datetime(self, request: SearchRequest) -> str:
        if request.start is not None or request.end is not None:
            return f"{_stamp(request.start)}/{_stamp(request.end)}"
        # The upstream requires datetime: without one from the caller, ask for the collection's whole extent.
        record = await self.collection(request.collection)
        intervals = ((record.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
        start, end = [*intervals[0], None, None][:2]
        return f"{start or '..'}/{end or '..'}"


def _stamp(value: dt.datetime | None) -> str:
    """An interval end for the upstream: RFC 3339 (fractions kept, so an end at .999999 stays inclusive)."""
    if value is None:
        return ".."
    return rfc3339(value, fraction=value.microsecond != 0) or ".."
