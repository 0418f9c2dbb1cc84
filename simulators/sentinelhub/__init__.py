"""Sentinel Hub simulator: OAuth2 token endpoint, Catalog (STAC API 1.0.0) and Statistical API.

Contract: `../shared/upstreams/sentinelhub.md` (digest), its scraped doc and `observed.md`. Choices where the doc
is silent are marked CHOICE and configurable through `create_app(**config)`:

- the token endpoint (Keycloak client-credentials form) is rate limited by a token bucket per client id
  (`token_burst`, `token_refill_per_s`); 429 carries `Retry-After` in milliseconds, as the real service does;
- catalog and statistics need `Authorization: Bearer`; a missing/expired token gets 401 (`token_ttl`);
- search returns items in datetime-then-id ascending order (CHOICE: the real order is not documented);
- GET search pages with `next=<int>` (the doc lost the GET next link); POST with body `{"next": N}`;
- filters follow the doc (`cql2_strict=True`, the default): the POST filter schema is `andExpression`,
  `cql2NotExpression` or a comparison predicate (binary comparison, `isBetween`), so anything else (OR, IN, LIKE,
  spatial, temporal, functions, arithmetic) is a 400; and they may only name the collection's queryables (the
  doc's queryables schema has `additionalProperties: false`: not even `datetime` or `id`, which have their own
  parameters). CHOICE: the doc shows one grammar for both encodings, so CQL2 text is held to it too.
  `cql2_strict=False` is the lenient mode of older versions (any operator; queryables plus `datetime`, `id`);
- "Make sure to use the appropriate end-point for each of the datasets": the real service lives on several
  deployments (hosts), each with its own collections. `deployments={"<name>": [collection ids]}` serves the
  Catalog and the Statistical API also under `/<name>/api/v1/...` with only those collections (others are 404
  there, as on a real deployment that lacks them); `root_collections` (default: all) limits the root the same way.
  The demo serves every collection at the root;
- statistics: output ids come from the evalscript's `setup()`; the index kind (NDVI, NDWI, NBR, SAR) is guessed
  from the bands it names; values are a deterministic, seasonal function of geometry, interval and kind;
  only intervals with an acquisition (cloud cover ≤ maxCloudCoverage) are listed; images over
  `max_image_pixels` per side get 400.

Item data (`data.py`): a 4 x 3 grid of UTM-33 tiles, Sentinel-2 L1C/L2A every 5 days and Sentinel-1 GRD every
6 days over 2023–2024. Statistics: `statistics.py`.
POST bodies are kept for tests at `GET/DELETE /_sim/bodies`; `POST /_sim/scenes` adds a scene acquired now.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import time
from collections import deque
from typing import Any
from urllib.parse import urlencode

import shapely
from pygeofilter.backends.native.evaluate import NativeEvaluator
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text
from shapely.geometry import box, shape
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.framework import SimulatorState, create_simulator_app, service_root
from simulators.sentinelhub.common import (
    attribute_names,
    fields_projection,
    grammar_error,
    json_value,
    parse_datetime_param,
    parse_fields,
    read_body,
    sh_error,
    standard_between,
)
from simulators.sentinelhub.data import (
    COLLECTIONS,
    CONFORMANCE,
    QUERYABLES,
    UTC,
    BadRequest,
    Catalog,
    Record,
)
from simulators.sentinelhub.statistics import compute_statistics

CATALOG = "/api/v1/catalog/1.0.0"
TOKEN_PATH = "/auth/realms/main/protocol/openid-connect/token"


def create_app(credentials: dict[str, str], seed: int = 42, **config: Any) -> Any:
    settings = {"token_ttl": 3600.0, "token_burst": 30, "token_refill_per_s": 1.0, "cql2_strict": True,
                "max_image_pixels": 2500, "deployments": {}, "root_collections": None, **config}
    state = SimulatorState("sentinelhub", seed=seed, credentials=credentials, token_ttl=settings["token_ttl"],
                           config=settings)
    data: dict[str, Catalog] = {}
    buckets: dict[str, tuple[float, float]] = {}  # client id → (tokens left, time of last refill)
    bodies: deque[dict[str, Any]] = deque(maxlen=500)

    def catalog() -> Catalog:
        if "c" not in data:
            data["c"] = Catalog(state)
        return data["c"]

    def authed(handler: Any) -> Any:
        async def guarded(request: Request) -> Response:
            if state.tokens.check_request(request) is None:
                return sh_error(401, "You are not authorized! Please provide a valid access token within the "
                                     "header Authorization: Bearer <accessToken>.")
            try:
                return await handler(request)
            except BadRequest as exc:
                return sh_error(exc.status, str(exc))

        return guarded

    async def token(request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": "Unsupported grant_type"}, status_code=400)
        client_id = str(form.get("client_id") or "")
        if client_id != credentials.get("client_id") or form.get("client_secret") != credentials.get(
                "client_secret"):
            return JSONResponse({"error": "invalid_client",
                                 "error_description": "Invalid client or Invalid client credentials"},
                                status_code=401)
        now = time.monotonic()
        left, last = buckets.get(client_id, (float(settings["token_burst"]), now))
        left = min(float(settings["token_burst"]), left + (now - last) * settings["token_refill_per_s"])
        if left < 1:
            wait_ms = math.ceil((1 - left) / settings["token_refill_per_s"] * 1000)
            buckets[client_id] = (left, now)
            return JSONResponse({"error": "too_many_requests", "error_description": "Rate limit exceeded"},
                                status_code=429, headers={"Retry-After": str(wait_ms)})
        buckets[client_id] = (left - 1, now)
        issued = state.tokens.issue(client_id, prefix="sh")
        return JSONResponse({"access_token": issued.value, "expires_in": int(settings["token_ttl"]),
                             "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy": 0,
                             "scope": "email profile"})

    def deployment(request: Request) -> str:
        """`/<deployment>` when the request came in under a deployment's prefix, else ''."""
        name = request.path_params.get("deployment")
        if name is None:
            return ""
        if name not in settings["deployments"]:
            raise BadRequest(f"Unknown endpoint '/{name}'", status=404)
        return f"/{name}"

    def served(request: Request) -> list[str]:
        """The collections of the deployment the request reached."""
        where = deployment(request)
        wanted = settings["deployments"][where[1:]] if where else settings["root_collections"]
        return [c for c in COLLECTIONS if wanted is None or c in wanted]

    def root_url(request: Request) -> str:
        return service_root(request).rstrip("/") + deployment(request) + CATALOG

    def collection_doc(request: Request, cid: str) -> dict[str, Any]:
        base = f"{root_url(request)}/collections/{cid}"
        return {**COLLECTIONS[cid], "links": [
            {"rel": "root", "href": f"{root_url(request)}/", "type": "application/json"},
            {"rel": "self", "href": base, "type": "application/json"},
            {"rel": "parent", "href": f"{root_url(request)}/", "type": "application/json"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "href": f"{base}/queryables",
             "type": "application/schema+json"},
            {"rel": "items", "href": f"{base}/items", "type": "application/geo+json"}]}

    def item_doc(request: Request, record: Record) -> dict[str, Any]:
        cid = record.item["collection"]
        base = f"{root_url(request)}/collections/{cid}"
        return {**record.item, "links": [
            {"rel": "root", "href": f"{root_url(request)}/", "type": "application/json"},
            {"rel": "self", "href": f"{base}/items/{record.item['id']}", "type": "application/geo+json"},
            {"rel": "parent", "href": base, "type": "application/json"},
            {"rel": "collection", "href": base, "type": "application/json"},
            {"rel": "derived_from", "title": "scihub download",
             "href": f"https://scihub.copernicus.eu/dhus/odata/v1/Products('{record.item['id']}')/$value"}]}

    def known(request: Request, cid: str) -> str:
        if cid not in served(request):
            raise BadRequest(f"Collection '{cid}' not found", status=404)
        return cid

    async def landing(request: Request) -> Response:
        root = root_url(request)
        links = [{"rel": "root", "href": f"{root}/", "type": "application/json"},
                 {"rel": "self", "href": f"{root}/", "type": "application/json"},
                 {"rel": "data", "href": f"{root}/collections", "type": "application/json"},
                 {"rel": "conformance", "href": f"{root}/conformance", "type": "application/json",
                  "title": "STAC conformance classes implemented by this server"},
                 {"rel": "search", "href": f"{root}/search", "type": "application/geo+json",
                  "title": "STAC search", "method": "GET"},
                 {"rel": "search", "href": f"{root}/search", "type": "application/geo+json",
                  "title": "STAC search", "method": "POST"},
                 *[{"rel": "child", "href": f"{root}/collections/{c}", "type": "application/json",
                    "title": COLLECTIONS[c]["title"]} for c in served(request)]]
        return JSONResponse({"type": "Catalog", "stac_version": "1.0.0", "id": "sentinel-hub",
                             "title": "Sentinel Hub STAC catalog",
                             "description": "STAC v1.0.0 implementation by Sentinel Hub",
                             "conformsTo": CONFORMANCE, "links": links})

    async def conformance(request: Request) -> Response:
        return JSONResponse({"conformsTo": CONFORMANCE})

    async def collections(request: Request) -> Response:
        root = root_url(request)
        return JSONResponse({"links": [{"rel": "root", "href": f"{root}/", "type": "application/json"},
                                       {"rel": "self", "href": f"{root}/collections", "type": "application/json"},
                                       {"rel": "parent", "href": f"{root}/", "type": "application/json"}],
                             "collections": [collection_doc(request, c) for c in served(request)]})

    async def collection(request: Request) -> Response:
        return JSONResponse(collection_doc(request, known(request, request.path_params["cid"])))

    async def queryables(request: Request) -> Response:
        cid = known(request, request.path_params["cid"])
        return JSONResponse({"type": "object", "title": "Queryables for Catalog STAC API",
                             "description": "Queryable names for the Catalog STAC API Item Search filter.",
                             "properties": QUERYABLES[cid], "additionalProperties": False})

    async def item(request: Request) -> Response:
        cid = known(request, request.path_params["cid"])
        record = catalog().by_id.get((cid, request.path_params["iid"]))
        if record is None:
            raise BadRequest(f"Item '{request.path_params['iid']}' not found in collection '{cid}'", status=404)
        return JSONResponse(item_doc(request, record))

    def run_search(request: Request, args: dict[str, Any], post: bool) -> dict[str, Any]:
        cols = args.get("collections")
        if isinstance(cols, str):
            cols = [c for c in cols.split(",") if c]
        if not isinstance(cols, list) or len(cols) != 1:
            raise BadRequest("Parameter 'collections' must contain exactly 1 collection")
        cid = known(request, str(cols[0]))
        start, end = parse_datetime_param(args.get("datetime"))
        try:
            limit = min(int(args.get("limit", 10)), 100)  # above the maximum: the maximum, not an error
            offset = int(args.get("next", 0))
        except (TypeError, ValueError):
            raise BadRequest("Parameters 'limit' and 'next' must be integers") from None
        if limit < 1 or offset < 0:
            raise BadRequest("Parameter 'limit' must be between 1 and 100 and 'next' non-negative")
        area = None
        if args.get("bbox") not in (None, "", []):
            raw = args["bbox"].split(",") if isinstance(args["bbox"], str) else args["bbox"]
            try:
                nums = [float(v) for v in raw]
            except (TypeError, ValueError):
                raise BadRequest("Parameter 'bbox' must be 4 or 6 numbers") from None
            if len(nums) not in (4, 6):
                raise BadRequest("Parameter 'bbox' must be 4 or 6 numbers")
            w, s, e, n = (nums[0], nums[1], nums[3], nums[4]) if len(nums) == 6 else nums
            area = box(w, s, e, n) if w <= e else shapely.union(box(w, s, 180, n), box(-180, s, e, n))
        if args.get("intersects") is not None:
            try:
                geo = shape(args["intersects"] if post else json_value(args["intersects"]))
            except Exception:
                raise BadRequest("Parameter 'intersects' is not a valid GeoJSON geometry") from None
            area = geo if area is None else area.intersection(geo)
        ids = args.get("ids")
        ids = set(ids.split(",") if isinstance(ids, str) else ids) if ids else None
        keep = compile_filter(cid, args.get("filter"), args.get("filter-lang"), post)
        include, exclude = parse_fields(args.get("fields"))
        matches = [r for r in window(cid, start, end)
                   if (ids is None or r.item["id"] in ids) and (area is None or area.intersects(r.geometry))
                   and keep(r)]
        page = matches[offset: offset + limit]
        features = [fields_projection(item_doc(request, r), include, exclude) if (include or exclude)
                    else item_doc(request, r) for r in page]
        more = offset + limit < len(matches)
        link_args = {k: v for k, v in args.items() if k != "next"}
        links = [{"rel": "self", "href": f"{root_url(request)}/search", "type": "application/geo+json"}]
        context: dict[str, Any] = {"limit": limit, "returned": len(features)}
        if more:
            context["next"] = offset + limit
            if post:
                links.append({"rel": "next", "href": f"{root_url(request)}/search", "type": "application/geo+json",
                              "title": "Next set of results", "method": "POST", "body": {"next": offset + limit},
                              "merge": True})
            else:
                query = urlencode({**link_args, "next": offset + limit})
                links.append({"rel": "next", "href": f"{root_url(request)}/search?{query}",
                              "type": "application/geo+json", "title": "Next set of results"})
        return {"type": "FeatureCollection", "features": features, "links": links, "context": context}

    def window(cid: str, start: dt.datetime | None, end: dt.datetime | None) -> list[Record]:
        records = catalog().records[cid]
        times = [r.when for r in records]
        lo = bisect.bisect_left(times, start) if start else 0
        hi = bisect.bisect_right(times, end) if end else len(records)
        return records[lo:hi]

    def compile_filter(cid: str, raw: Any, lang: Any, post: bool) -> Any:
        if raw in (None, ""):
            return lambda record: True
        lang = lang or ("cql2-json" if post and isinstance(raw, dict) else "cql2-text")
        if lang not in ("cql2-text", "cql2-json"):
            raise BadRequest(f"Parameter 'filter-lang' must be cql2-text or cql2-json, not '{lang}'")
        try:
            node = parse_cql2_json(standard_between(json_value(raw))) if lang == "cql2-json" \
                else parse_cql2_text(str(raw))
        except Exception as exc:
            raise BadRequest(f"Invalid {lang} filter: {str(exc).splitlines()[0][:200]}") from None
        strict = settings["cql2_strict"]
        allowed = [*QUERYABLES[cid], *(() if strict else ("datetime", "id"))]
        unknown = sorted(attribute_names(node) - set(allowed))
        if unknown:
            raise BadRequest(f"Invalid filter: {', '.join(unknown)} is not a queryable of collection '{cid}'; "
                             f"queryables: {', '.join(allowed)}")
        problem = grammar_error(node) if strict else None
        if problem:
            raise BadRequest(f"Invalid filter: {problem}")
        compiled = NativeEvaluator(use_getattr=False, allow_nested_attributes=False).evaluate(node)

        def keep(record: Record) -> bool:
            values = {**record.item["properties"], "datetime": record.when, "id": record.item["id"]}
            try:
                return bool(compiled(values))
            except (TypeError, KeyError, AttributeError):
                return False

        return keep

    async def search_get(request: Request) -> Response:
        return JSONResponse(run_search(request, dict(request.query_params), post=False))

    async def search_post(request: Request) -> Response:
        body = await read_body(request, bodies)
        return JSONResponse(run_search(request, body, post=True))

    async def items(request: Request) -> Response:
        cid = known(request, request.path_params["cid"])
        args = {**request.query_params, "collections": [cid]}
        args.setdefault("datetime", "../..")
        result = run_search(request, args, post=False)
        return JSONResponse({"type": "FeatureCollection", "features": result["features"],
                             "links": result["links"], "timeStamp": dt.datetime.now(UTC).isoformat(),
                             "numberReturned": len(result["features"])})

    async def statistics(request: Request) -> Response:
        body = await read_body(request, bodies)
        return JSONResponse(compute_statistics(catalog(), state, settings, body, served(request)))

    async def new_scene(request: Request) -> Response:
        """`POST /_sim/scenes {"bbox": [w, s, e, n], "collection"?, "datetime"?, "id"?, "cloud_cover"?}`: a scene
        listed from now on (see `data.Catalog.add_scene`); answers the item (201)."""
        try:
            record = catalog().add_scene(await request.json())
        except BadRequest as exc:
            return sh_error(exc.status, str(exc))
        return JSONResponse(item_doc(request, record), status_code=201)

    async def stored_bodies(request: Request) -> Response:
        if request.method == "DELETE":
            bodies.clear()
        return JSONResponse(list(bodies))

    routes = [Route(TOKEN_PATH, token, methods=["POST"]),
              Route("/_sim/bodies", stored_bodies, methods=["GET", "DELETE"]),
              Route("/_sim/scenes", new_scene, methods=["POST"])]
    for root in ("", "/{deployment}"):  # the root, and each deployment's prefix (see `deployments`)
        routes += [
            Route(f"{root}{CATALOG}/", authed(landing)),
            Route(f"{root}{CATALOG}", authed(landing)),
            Route(f"{root}{CATALOG}/conformance", authed(conformance)),
            Route(f"{root}{CATALOG}/collections", authed(collections)),
            Route(f"{root}{CATALOG}/collections/{{cid}}", authed(collection)),
            Route(f"{root}{CATALOG}/collections/{{cid}}/queryables", authed(queryables)),
            Route(f"{root}{CATALOG}/collections/{{cid}}/items", authed(items)),
            Route(f"{root}{CATALOG}/collections/{{cid}}/items/{{iid}}", authed(item)),
            Route(f"{root}{CATALOG}/search", authed(search_get), methods=["GET"]),
            Route(f"{root}{CATALOG}/search", authed(search_post), methods=["POST"]),
            Route(f"{root}/api/v1/statistics", authed(statistics), methods=["POST"]),
        ]
    return create_simulator_app(state, routes)
