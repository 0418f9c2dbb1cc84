"""CarbonMapper's three collections, each declared once, with what its REST endpoint evaluates upstream.

- `carbonmapper-plumes`: `GET /api/v1/catalog/plumes/annotated` (paged, `total_count`), one plume from
  `/catalog/plume/{name}`. `source_name` is joined from `sources.geojson` (the API has no plume → source key):
  one cached read per query over the query's extent, started before the first plume page is read.
- `carbonmapper-sources`: `GET /api/v1/catalog/sources.geojson` (DBSCAN clusters of plumes; no paging: one
  cached read per query, paged here), one source from `/catalog/source/{name}`. `datetime` is evaluated here on
  the source's span [timestamp_min, timestamp_max] (pushing it down would re-cluster fewer plumes); where a
  deployment leaves the span out, it comes from the source's `plume_ids` (`times_from_plumes`, see records).
- `carbonmapper-scenes`: `GET /api/v1/catalog/scenes/annotated` (paged, `count`) with
  `cloud_cover_pct_max=<include_cloud_max>` (the upstream lists only scenes under 25 % cloud otherwise). It lists
  only scenes "eligible for null detection" (assessed too), so one scene by name that it does not list is
  answered from the plume records of that scene (`scene_from_plumes`): a plume's scene link never 404s.
What a table does not push down, the engine evaluates on the face's own feature or item.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from geofed import cql2, errors
from geofed.collection import Collection
from geofed.query import Batch, Face, FeatureQuery, Param, Params, PushdownTable, Range, RecordPage, UpstreamSource
from geofed.query import rfc3339 as _rfc3339
from providers.carbonmapper import records
from providers.carbonmapper.client import MAX_LIMIT, NAME, CatalogClient, rest_bbox

LOGGER = logging.getLogger(__name__)

S = {"type": "string"}
N = {"type": "number"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}
T = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _interval(start: dt.datetime | None, end: dt.datetime | None) -> Params:
    return [("datetime", f"{_rfc3339(start, fraction=True) or '..'}/{_rfc3339(end, fraction=True) or '..'}")]


PORTAL = ({"rel": "canonical", "type": "text/html", "title": "CarbonMapper Data Portal",
           "href": "https://data.carbonmapper.org"},)
PROVIDERS = ({"name": "Carbon Mapper", "roles": ["producer", "licensor", "host"],
              "url": "https://data.carbonmapper.org"},)
# The data portal's archive begins in 2016 (the first airborne campaigns); it is ongoing.
SINCE = ("2016-01-01T00:00:00Z", None)


def _declare(cid: str, title: str, description: str, keywords: tuple[str, ...], **more: Any) -> Collection:
    return Collection(id=cid, title=title, description=description, keywords=keywords, providers=PROVIDERS,
                      interval=SINCE, links=PORTAL, **more)


# ----------------------------------------------------------------- plumes
@dataclass
class _Links:
    """Per plume query: whether plumes get `source_name` (links, or the filter / sort needs it) and the one
    `sources.geojson` read that provides it."""

    wanted: bool
    task: asyncio.Future[dict[str, str]] | None = None


_LINKS: ContextVar[_Links | None] = ContextVar("carbonmapper_plume_links", default=None)


class PlumeSource(UpstreamSource):
    collection = _declare(
        records.PLUMES, "CarbonMapper plumes",
        "Methane and CO2 plumes detected by CarbonMapper (airborne GAO / AVIRIS-NG / AVIRIS-3, EMIT, Tanager), one "
        "feature per plume (id = plume name, e.g. GAO20230628t191011p0000-B) at its origin, with the emission rate "
        "(emission_auto, kg/h). Filter with gas, sector, instrument, plume_quality, scene_name or source_name "
        "(query string or CQL2); links lead to the plume images, its scene and its source.",
        ("methane", "carbon dioxide", "plumes", "emissions", "CarbonMapper"),
        stac_extensions=(records.VIEW,),
        item_assets={field: {"type": media, "roles": roles, "title": title}
                     for field, (media, roles, _, title) in records.PLUME_ASSETS.items()},
        options={"link_sources": True},  # one (cached) sources.geojson read per query for plume → source links
    )
    upstream = NAME
    queryables = {
        "plume_id": S, "uuid": UUID, "gas": _enum(records.GASES), "sector": _enum(records.SECTORS),
        "instrument": _enum(records.INSTRUMENTS), "plume_quality": _enum(records.QUALITIES), "emission_auto": N,
        "emission_uncertainty_auto": N, "scene_timestamp": T, "published_at": T, "modified": T, "scene_name": S,
        "scene_id": S, "source_name": S, "platform": S, "mission_phase": S, "gsd": N, "off_nadir": N,
        "wind_speed_avg_auto": N, "wind_direction_avg_auto": N, "emission_cmf_type": S, "cmf_type": S,
        "sensitivity_mode": S, "emission_version": S, "processing_software": S, "collection": S, "status": S,
        "is_offshore": B, "hide_emission": B,
    }
    table = PushdownTable(
        properties={
            "gas": Param("plume_gas", many=False), "sector": Param("sectors"), "instrument": Param("instruments"),
            "plume_quality": Param("qualities"), "plume_id": Param("plume_names"), "uuid": Param("plume_ids"),
            "scene_name": Param("scene_name", many=False), "scene_id": Param("scene_id", many=False),
            "source_name": Param("source_name", many=False),
            "emission_auto": Range("emission_min", "emission_max", integer=True),
        },
        bbox=rest_bbox, datetime=_interval, ids=Param("plume_names"),
        sorts={"emission_auto": {"asc": "emissions_asc", "desc": "emissions_desc"},
               "published_at": {"asc": "published_asc", "desc": "published_desc"},
               "scene_timestamp": {"asc": "asc", "desc": "desc"}},  # ties: by plume name
        default_sort="desc",  # the upstream's own: newest scene first
    )
    time_fields = ("scene_timestamp",)
    watch_field = "published_at"  # geofed.alerts: new plumes are those published since the last poll
    # geofed.alerts polls without the sources.geojson join (one upstream call per poll) unless a subscription filters
    watch_options, watch_joins = {"link_sources": False}, ("source_name",)  # on source_name, which needs it
    stac_names = records.STAC_NAMES[records.PLUMES]
    page_size = MAX_LIMIT

    def __init__(self, link_sources: bool = True, **_: Any) -> None:
        self.client = CatalogClient()
        self.link_sources = link_sources

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.plume_feature(record, self.context())

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.plume_item(record, self.context())

    async def query(self, q: FeatureQuery) -> RecordPage:
        used = cql2.attributes(q.filter) | set(q.equals) | {name for name, _ in q.sortby}
        links = _Links(wanted="source_name" in used or (self.link_sources and not q.hits_only))
        token = _LINKS.set(links)
        try:
            return await super().query(q)
        finally:
            _LINKS.reset(token)
            if links.task is not None and not links.task.done():
                links.task.cancel()

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        pinned = next((v for k, v in params if k == "source_name"), None)
        links = _LINKS.get()
        index: asyncio.Future[dict[str, str]] | None = None
        if pinned is None and (links.wanted if links is not None else self.link_sources):
            index = links.task if links is not None else None
            if index is None:  # the first page: read sources.geojson while the plumes are read
                index = asyncio.ensure_future(self._source_index(params))
                if links is not None:
                    links.task = index
        page = await self.client.plumes([*params, ("limit", str(limit)), ("offset", str(offset))])
        if pinned is not None:
            for plume in page.records:
                plume["source_name"] = pinned  # the upstream filtered on it
        elif index is not None:
            by_plume = await index
            for plume in page.records:
                plume["source_name"] = by_plume.get(str(plume.get("plume_id"))) or by_plume.get(str(plume.get("id")))
        return Batch(page.records, total=page.total)

    async def get(self, identifier: str) -> dict[str, Any]:
        try:
            record = await self.client.plume(identifier)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"no plume {identifier!r} in {self.collection_id}") from None
        if self.link_sources:
            try:
                detail = await self.client.source_of_plume(str(record.get("plume_id", identifier)))
                record["source_name"] = detail.get("source_name")
            except errors.UpstreamNotFound:
                record["source_name"] = None  # a plume not (yet) clustered into a source
        return record

    async def _source_index(self, params: Params) -> dict[str, str]:
        """plume name (or uuid) → source name, from one `sources.geojson` read over the query's bbox and gas:
        the source of a plume in that bbox has that plume, hence is listed."""
        narrowing = [(k, v) for k, v in params if k in ("bbox", "plume_gas")]
        try:
            features = await self.client.sources(narrowing)
        except errors.UpstreamError as exc:
            # links are an extra: a sources failure must not take the plumes down with it
            LOGGER.warning("carbonmapper: no plume → source links for this query: %s", exc.message)
            return {}
        by_plume: dict[str, str] = {}
        for feature in features:
            props = feature.get("properties") or {}
            for plume in props.get("plume_ids") or []:  # names on the portal; UUIDs accepted as well
                by_plume[str(plume)] = props.get("source_name")
        return by_plume


# ----------------------------------------------------------------- sources
class SourceSource(UpstreamSource):
    collection = _declare(
        records.SOURCES, "CarbonMapper sources",
        "Persistent emission sources: DBSCAN clusters (eps 100 m) of same-gas, same-sector CarbonMapper plumes "
        "(id = source name, e.g. CH4_6A_100m_-74.00656_40.71283), with plume counts, mean emission rate and "
        "persistence. Each links to its plumes.",
        ("methane", "carbon dioxide", "sources", "emissions", "CarbonMapper"),
        options={"times_from_plumes": True},  # a span the deployment leaves out comes from `plume_ids`
    )
    upstream = NAME
    queryables = {
        "source_name": S, "gas": _enum(records.GASES), "sector": _enum(records.SECTORS), "plume_count": I,
        "date_count": I, "cluster_id": I, "emission_auto": N, "emission_uncertainty_auto": N, "persistence": N,
        "timestamp_min": T, "timestamp_max": T, "published_at_min": T, "published_at_max": T,
    }
    # sources.geojson keeps the sources with *a plume* in the bbox: the source's point is tested here
    table = PushdownTable(
        properties={"gas": Param("plume_gas", many=False), "sector": Param("sectors"),
                    "source_name": Param("source_name", many=False)},
        bbox=rest_bbox, bbox_exact=False, ids=Param("source_name", many=False),
    )
    time_fields = ("timestamp_max", "timestamp_min", "timestamp_max")  # a span
    stac_names = records.STAC_NAMES[records.SOURCES]
    page_size = 100_000  # no paging upstream: one read is the whole answer

    def __init__(self, times_from_plumes: bool = True, **_: Any) -> None:
        self.client = CatalogClient()
        self.times_from_plumes = bool(times_from_plumes)

    def fields(self, face: Face = "ogc") -> dict[str, dict[str, Any]]:
        out = super().fields(face)
        if face == "stac":
            out.pop("datetime", None)  # items have a span (start/end_datetime) and `datetime: null`
        return out

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.source_feature(record, self.context())

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.source_item(record, self.context())

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        found = [records.source_record(f, self.times_from_plumes)
                 for f in await self.client.sources(params)]  # cached: pages are cheap
        return Batch(found[offset:offset + limit], total=len(found))

    async def get(self, identifier: str) -> dict[str, Any]:
        try:
            detail = await self.client.source(identifier)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"no source {identifier!r} in {self.collection_id}") from None
        return records.source_record_from_detail(detail)


# ----------------------------------------------------------------- scenes
class SceneSource(UpstreamSource):
    collection = _declare(
        records.SCENES, "CarbonMapper scenes",
        "Published CarbonMapper scenes (id = scene name, e.g. GAO20230628t190435p0000): the footprint of one "
        "instrument overpass, with plume counts, including scenes without plumes. Each links to its plumes.",
        ("methane", "scenes", "imaging spectroscopy", "CarbonMapper"),
        # list cloudy scenes too; a scene scenes/annotated does not list at all is read from its plumes
        options={"include_cloud_max": 100, "scene_from_plumes": True},
    )
    upstream = NAME
    queryables = {
        "name": S, "uuid": UUID, "instrument": _enum(records.INSTRUMENTS), "timestamp": T, "mission_phase": S,
        "plume_count": I, "published_plume_count": I, "deleted_plume_count": I, "hidden_plume_count": I,
        "is_quick_view": B, "is_quick_look": B,
    }
    table = PushdownTable(
        properties={"instrument": Param("instruments"), "name": Param("names"), "uuid": Param("ids")},
        bbox=rest_bbox, datetime=_interval, ids=Param("names"),
        sorts={"timestamp": {"asc": "asc", "desc": "desc"}}, default_sort="desc",
    )
    time_fields = ("timestamp",)
    stac_names = records.STAC_NAMES[records.SCENES]
    page_size = MAX_LIMIT

    def __init__(self, include_cloud_max: int = 100, scene_from_plumes: bool = True, **_: Any) -> None:
        self.client = CatalogClient()
        self.include_cloud_max = int(include_cloud_max)
        self.scene_from_plumes = bool(scene_from_plumes)

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.scene_feature(record, self.context())

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.scene_item(record, self.context())

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        page = await self.client.scenes([*params, ("cloud_cover_pct_max", str(self.include_cloud_max)),
                                         ("limit", str(max(1, limit))), ("offset", str(offset))])
        return Batch(page.records, total=page.total)

    async def get(self, identifier: str) -> dict[str, Any]:
        page = await self.client.scenes([("names", identifier), ("cloud_cover_pct_max", str(self.include_cloud_max)),
                                         ("limit", "1")])
        if page.records:
            return page.records[0]
        # scenes/annotated lists only scenes "eligible for null detection" (assessed, and our cloud threshold),
        # and scene publication can lag plume publication (observed.md): a plume's scene link still resolves,
        # to what its plumes say about the scene (`scene_from_plumes`, on by default).
        if self.scene_from_plumes:
            plumes = await self.client.plumes([("scene_name", identifier), ("limit", str(MAX_LIMIT))])
            found = [p for p in plumes.records if records.scene_name_of(str(p.get("plume_id"))) == identifier]
            if found:
                return records.scene_record_from_plumes(identifier, found)
        raise errors.NotFound(f"no scene {identifier!r} in {self.collection_id} (it may not be published yet)")
