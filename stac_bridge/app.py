"""The STAC API at `/stac`: stac-fastapi with the federated client; every extension is wired here, once.

`geofed.app` calls `extension(settings)` and mounts the returned routes before pygeoapi's, so this app
shadows pygeoapi's own `/stac` routes.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import attr
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, model_validator
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.models import (
    ItemCollectionUri,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions import (
    CollectionSearchExtension,
    FieldsExtension,
    FreeTextExtension,
    ItemCollectionFilterExtension,
    OffsetPaginationExtension,
    SearchFilterExtension,
    SortExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.fields.fields import FieldsConformanceClasses
from stac_fastapi.extensions.free_text.free_text import FreeTextConformanceClasses
from stac_fastapi.extensions.sort.sort import SortConformanceClasses
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.extension import ApiExtension
from stac_fastapi.types.search import APIRequest, BaseSearchPostRequest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from geofed import __version__, errors
from geofed.openapi import METHODS, UPSTREAM, Rule, add_statuses, error_response
from geofed.settings import Settings
from stac_bridge.core import FederatedClient, QueryablesClient, json_response
from stac_bridge.federation import Federation
from stac_bridge.links import Links
from stac_bridge.registry import Registry, load_members
from stac_bridge.token import TokenSigner, generated_secret

LOGGER = logging.getLogger("geofed.stac")


class FilterPostRequest(BaseModel):
    """stac-fastapi's POST filter model accepts CQL2 JSON only; pystac-client also POSTs CQL2 text."""

    filter_expr: dict[str, Any] | str | None = Field(None, alias="filter")
    filter_crs: str | None = Field(None, alias="filter-crs")
    filter_lang: Literal["cql2-json", "cql2-text"] | None = Field(None, alias="filter-lang")


@attr.s
class FederatedSearchFilterExtension(SearchFilterExtension):
    POST: type[BaseModel] = FilterPostRequest


class SearchPostBody(BaseSearchPostRequest):
    """stac-pydantic's spatial check reads the body as a dict: a JSON array or scalar was a 500, now a 400."""

    @model_validator(mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("the search body must be a JSON object")
        return value


@attr.s
class StrictGetRequest(APIRequest):
    strict: bool = attr.ib(default=False)


class StrictPostRequest(BaseModel):
    strict: bool = Field(False, description="true: any member failure fails the search (502)")


@attr.s
class FederationExtension(ApiExtension):
    """geofed's `strict` search parameter (partial answers are the default)."""

    GET: type[APIRequest] = StrictGetRequest
    POST: type[BaseModel] = StrictPostRequest
    conformance_classes: list[str] = attr.ib(factory=list)

    def register(self, app: FastAPI) -> None:
        pass


SORT_V1 = "https://api.stacspec.org/v1.0.0/item-search#sort"
FEATURES_SORT_V1 = "https://api.stacspec.org/v1.0.0/ogcapi-features#sort"


def build_api(settings: Settings) -> StacApi:
    links = Links(settings.public_url)
    registry = Registry(load_members(settings), settings.federation_timeout, settings.cache_ttl)
    secret = settings.pagination_secret.get_secret_value().encode() if settings.pagination_secret else None
    # Without GEOFED_PAGINATION_SECRET the key is random per process: tokens then do not survive a restart
    # and are refused by other replicas.
    signer = TokenSigner(secret or generated_secret())
    federation = Federation(registry, signer, settings.federation_sort_cap, settings.cache_ttl)
    queryables = QueryablesClient(registry=registry, links=links)

    search_extensions: list[ApiExtension] = [
        FederatedSearchFilterExtension(client=queryables),
        # the released sort extension is v1.0.0 (what pystac-client and the validators look for); stac-fastapi 7
        # names a v1.1.0 draft: advertise both
        SortExtension(conformance_classes=[SortConformanceClasses.ITEM_SEARCH_SORT, SORT_V1]),
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.SEARCH]),
        TokenPaginationExtension(),
        FederationExtension(),
    ]
    items_extensions: list[ApiExtension] = [
        ItemCollectionFilterExtension(client=queryables),
        SortExtension(conformance_classes=[SortConformanceClasses.FEATURES_SORT, FEATURES_SORT_V1]),
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        TokenPaginationExtension(),
        FederationExtension(),
    ]
    collection_search = CollectionSearchExtension.from_extensions([
        FreeTextExtension(conformance_classes=[FreeTextConformanceClasses.COLLECTIONS]),
        OffsetPaginationExtension(),
    ])
    api_settings = ApiSettings(
        stac_fastapi_title="geofed STAC API", stac_fastapi_landing_id="geofed", stac_fastapi_version=__version__,
        stac_fastapi_description="Federated STAC API over geofed's collections, Sentinel Hub and CarbonMapper",
        openapi_url="/api", docs_url="/api.html",
    )
    client = FederatedClient(registry=registry, federation=federation, links=links,
                             landing_page_id="geofed", title=api_settings.stac_fastapi_title,
                             description=api_settings.stac_fastapi_description)
    api = StacApi(
        settings=api_settings,
        client=client,
        stac_version="1.1.0",
        extensions=[*search_extensions, *items_extensions, collection_search],
        search_get_request_model=create_get_request_model(search_extensions),
        search_post_request_model=create_post_request_model(search_extensions, base_model=SearchPostBody),
        items_get_request_model=create_request_model("ItemCollectionUri", base_model=ItemCollectionUri,
                                                     extensions=items_extensions, request_type="GET"),
        collections_get_request_model=collection_search.GET,
        middlewares=[],  # the root app already has CORS, metrics and the error boundary
    )
    _add_error_handlers(api.app)
    _document_statuses(api.app, settings)
    return api


STAC_EXCEPTION = {"type": "object", "required": ["code", "description"], "properties": {
    "code": {"type": "string"}, "description": {"type": "string"},
    "parameter": {"type": "string", "description": "the request parameter that is wrong"},
    "upstream": {"type": "string", "description": "the federation member that failed"}}}
STAC_RULES = (
    Rule(r".*", METHODS, (500,)),
    Rule(r"/search", ("get", "post"), (400, 404, *UPSTREAM)),
    Rule(r"/collections", ("get",), (400, *UPSTREAM)),
    Rule(r"/collections/\{collection_id\}(/queryables)?", ("get",), (404, *UPSTREAM)),
    Rule(r"/collections/\{collection_id\}/items(/\{item_id\})?", ("get",), (400, 404, *UPSTREAM)),
)
_NUMBER = r"-?\d+(\.\d+)?"
_INSTANT = r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {  # what geofed parses, so that the schema says what is accepted
    "bbox": {"type": "string", "pattern": rf"^{_NUMBER}(,{_NUMBER}){{3}}(,{_NUMBER},{_NUMBER})?$",
             "description": "minx,miny,maxx,maxy (or 6 numbers with heights), WGS 84 longitude/latitude "
                            "within [-180, 180] x [-90, 90]; minx <= maxx, miny <= maxy"},
    "datetime": {"type": "string",
                 "pattern": rf"^({_INSTANT}|{_INSTANT}/({_INSTANT}|\.\.)?|(\.\.)?/{_INSTANT})$",
                 "description": "an RFC 3339 date-time, or an interval start/end with one open end as '..' or "
                                "empty; the start not after the end"},
    "limit": {"type": "integer", "minimum": 1, "default": 10,
              "description": "page size; a larger value than the server's maximum is reduced to it"},
    "offset": {"type": "integer", "minimum": 0},
}


def _document_statuses(app: FastAPI, settings: Settings) -> None:
    """`/stac/api` lists every status a route can answer (see `geofed.openapi`) and the parameter formats
    geofed parses; stac-fastapi's 422 goes (validation errors are answered 400)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            document.setdefault("components", {}).setdefault("schemas", {})["Exception"] = STAC_EXCEPTION
            add_statuses(document, STAC_RULES, settings,
                         lambda code: error_response(code, {"$ref": "#/components/schemas/Exception"}),
                         drop=["422"])
            for item in document.get("paths", {}).values():
                for parameter in (item.get("get") or {}).get("parameters", []):
                    if parameter.get("in") == "query" and parameter.get("name") in QUERY_SCHEMAS:
                        parameter["schema"] = dict(QUERY_SCHEMAS[parameter["name"]])
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as STAC error JSON (`code`, `description`), naming the parameter or the upstream."""

    async def geofed_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.GeofedError)
        return json_response(exc.to_dict(), status_code=exc.status)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path")]
        parameter = where[0] if where else "request"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return json_response({"code": "InvalidParameterValue", "description": f"'{parameter}': {message}",
                              "parameter": parameter}, status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # FastAPI's, or the router's for a path no route matches
        code = {400: "InvalidParameterValue", 404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Error")
        return json_response({"code": code, "description": str(exc.detail)}, status_code=exc.status_code)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        LOGGER.error("unhandled error on %s", request.url.path, exc_info=exc)
        return json_response({"code": "InternalError", "description": "internal error; see the server log"},
                             status_code=500)

    app.add_exception_handler(errors.GeofedError, geofed_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


class LandingAlias:
    """`/stac` (no trailing slash) answers like `/stac/`: pystac-client users type it, and the mount only
    matches `/stac/…`, so without this the request would fall through to pygeoapi's own `/stac`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "path": "/", "raw_path": b"/", "root_path": scope.get("root_path", "") + "/stac"}
        await self.app(scope, receive, send)


def extension(settings: Settings) -> dict[str, Any]:
    api = build_api(settings)
    return {"routes": [Route("/stac", LandingAlias(api.app), methods=["GET", "HEAD"]), Mount("/stac", app=api.app)]}
