"""`carbonmapper-plumes`: plumes from `GET /api/v1/catalog/plumes/annotated`, one from `/catalog/plume/{name}`.

Pushed down: bbox, datetime (on `scene_timestamp`), gas → `plume_gas`, sector → `sectors`, instrument →
`instruments`, plume_quality → `qualities`, emission_auto ranges → `emission_min/max`, plume_id →
`plume_names`, uuid → `plume_ids`, scene_name, scene_id, source_name, ids, sort. Everything else is evaluated
locally with exact paging. `source_name` is joined from `sources.geojson` (the API has no plume → source key).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from geofed import cql2, errors
from geofed.errors import InvalidParameter
from geofed.query import FeatureQuery, RecordPage
from geofed.settings import get_settings
from providers.carbonmapper import pushdown, records
from providers.carbonmapper.client import CatalogClient, rest_bbox

LOGGER = logging.getLogger(__name__)

S = {"type": "string"}
N = {"type": "number"}
T = {"type": "string", "format": "date-time"}
B = {"type": "boolean"}


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    # `enum` for JSON Schema (STAC queryables), `values` for pygeoapi's queryables document
    return {"type": "string", "enum": list(values), "values": list(values)}


FIELDS: dict[str, dict[str, Any]] = {
    "plume_id": S, "uuid": {"type": "string", "format": "uuid"}, "gas": _enum(records.GASES),
    "sector": _enum(records.SECTORS), "instrument": _enum(records.INSTRUMENTS),
    "plume_quality": _enum(records.QUALITIES), "emission_auto": N, "emission_uncertainty_auto": N,
    "scene_timestamp": T, "published_at": T, "modified": T, "scene_name": S, "scene_id": S, "source_name": S,
    "platform": S, "mission_phase": S, "gsd": N, "off_nadir": N, "wind_speed_avg_auto": N,
    "wind_direction_avg_auto": N, "emission_cmf_type": S, "cmf_type": S, "sensitivity_mode": S,
    "emission_version": S, "processing_software": S, "collection": S, "status": S, "is_offshore": B,
    "hide_emission": B,
}
TEMPORAL = {"scene_timestamp", "published_at", "modified"}
RULES = {
    "gas": pushdown.Rule("plume_gas", many=False, enum=records.GASES),
    "sector": pushdown.Rule("sectors", enum=records.SECTORS),
    "instrument": pushdown.Rule("instruments", enum=records.INSTRUMENTS),
    "plume_quality": pushdown.Rule("qualities", enum=records.QUALITIES),
    "plume_id": pushdown.Rule("plume_names"),
    "uuid": pushdown.Rule("plume_ids"),
    "scene_name": pushdown.Rule("scene_name", many=False),
    "scene_id": pushdown.Rule("scene_id", many=False),
    "source_name": pushdown.Rule("source_name", many=False),
}
RANGES = {"emission_auto": ("emission_min", "emission_max")}
# sortby property → upstream `sort` value per direction
SORTS = {
    "emission_auto": {"asc": "emissions_asc", "desc": "emissions_desc"},
    "published_at": {"asc": "published_asc", "desc": "published_desc"},
    "scene_timestamp": {"asc": "asc", "desc": "desc"},
    "datetime": {"asc": "asc", "desc": "desc"},
}


class PlumeSource:
    collection_id = records.PLUMES
    title = "CarbonMapper plumes"
    description = ("Methane and CO2 plumes detected by CarbonMapper (airborne GAO/AVIRIS, EMIT, Tanager), with "
                   "emission rates in kg/h, linked to the scene they were seen in and to their source.")
    upstream = "carbonmapper"

    def __init__(self, link_sources: bool = True, **_: Any) -> None:
        self.client = CatalogClient()
        self.link_sources = link_sources  # one cached sources.geojson read per page adds plume → source links

    def fields(self) -> dict[str, dict[str, Any]]:
        return FIELDS

    def sortable(self) -> set[str]:
        """STAC item fields the upstream sorts on (`geofed.query.FeatureSource`): `sort=asc|desc` orders by
        `scene_timestamp`, which is the item's `datetime` (ties by plume name, descending)."""
        return {"datetime"}

    @property
    def base(self) -> str:
        return get_settings().public_url

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.plume_feature(record, self.base)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.plume_item(record, self.base)

    async def query(self, q: FeatureQuery) -> RecordPage:
        node = pushdown.combined_filter(q, FIELDS)
        pd = pushdown.split(node, RULES, RANGES, FIELDS)
        params = pd.params()
        if q.ids:
            params += [("plume_names", i) for i in q.ids]
        if q.bbox:
            params += rest_bbox(q.bbox)
        elif q.intersects:
            params += rest_bbox(pushdown.geometry_bounds(q.intersects))  # narrowing; the geometry is tested locally
        if interval := pushdown.rfc3339_interval(q):
            params.append(("datetime", interval))
        params.append(("sort", _sort(q.sortby)))
        pinned_source = pd.singles.get("source_name")
        needs_join = node is not None and "source_name" in cql2.attributes(node) and not pinned_source

        async def fetch(offset: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
            body = await self.client.plumes([*params, ("limit", str(limit)), ("offset", str(offset))])
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise errors.UpstreamError("CarbonMapper returned a malformed plume list (no 'items')",
                                           upstream="carbonmapper")
            if pinned_source:
                for item in items:
                    item["source_name"] = pinned_source  # the upstream filtered on it
            elif needs_join:
                await self._join_sources(items)
            return items, body.get("total_count")

        keep = pushdown.local_predicate(node, q, TEMPORAL)
        exact = pd.exact and not q.intersects
        # plume → source links: read sources.geojson over the *query's* extent while the page is fetched, so the
        # join costs no extra round trip (the read is cached, and shared by every page of the query)
        linking = self.link_sources and not pinned_source and not needs_join
        query_extent = q.bbox or (pushdown.geometry_bounds(q.intersects) if q.intersects else None)
        index_task = (asyncio.ensure_future(self._source_index(query_extent, pd.singles.get("plume_gas")))
                      if linking else None)
        try:
            result = await pushdown.page(fetch, pd, q, lambda r: keep(self.to_feature(r)), exact)
        except BaseException:
            if index_task is not None:
                index_task.cancel()
            raise
        if index_task is not None:
            self._apply_index(result.records, await index_task)
        return result

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

    async def _join_sources(self, items: list[dict[str, Any]]) -> None:
        """Sets `source_name` on plumes from one `sources.geojson` read over their extent."""
        points = [i["geometry_json"]["coordinates"] for i in items if (i.get("geometry_json") or {}).get(
            "coordinates")]
        if not points:
            return
        pad = 0.01
        extent = (max(-180.0, min(p[0] for p in points) - pad), max(-90.0, min(p[1] for p in points) - pad),
                  min(180.0, max(p[0] for p in points) + pad), min(90.0, max(p[1] for p in points) + pad))
        gases = {i.get("gas") for i in items}
        self._apply_index(items, await self._source_index(extent, gases.pop() if len(gases) == 1 else None))

    async def _source_index(self, extent: tuple[float, float, float, float] | None,
                            gas: str | None) -> dict[str, str]:
        """plume name (or uuid) → source name, from one `sources.geojson` read (None extent = everywhere)."""
        params = (rest_bbox(extent) if extent else []) + ([("plume_gas", str(gas))] if gas else [])
        try:
            collection = await self.client.sources(params)
        except errors.UpstreamError as exc:
            # links are an extra: a sources failure must not take the plumes down with it
            LOGGER.warning("carbonmapper: no plume → source links for this page: %s", exc.message)
            return {}
        by_plume: dict[str, str] = {}
        for feature in collection.get("features") or []:
            props = feature.get("properties") or {}
            for plume in props.get("plume_ids") or []:  # names on the portal; UUIDs accepted as well
                by_plume[str(plume)] = props.get("source_name")
        return by_plume

    @staticmethod
    def _apply_index(items: list[dict[str, Any]], by_plume: dict[str, str]) -> None:
        for item in items:
            item["source_name"] = by_plume.get(str(item.get("plume_id"))) or by_plume.get(str(item.get("id")))


def _sort(sortby: list[tuple[str, str]]) -> str:
    if not sortby:
        return "desc"  # upstream default: newest scene first
    if len(sortby) > 1 or sortby[0][0] not in SORTS:
        raise InvalidParameter(
            f"'sortby' supports one of {', '.join(SORTS)} (ascending or descending) for this collection",
            parameter="sortby",
        )
    name, direction = sortby[0]
    return SORTS[name][direction]
