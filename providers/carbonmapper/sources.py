"""`carbonmapper-sources`: sources (DBSCAN clusters of plumes) from `GET /api/v1/catalog/sources.geojson`,
one from `GET /api/v1/catalog/source/{source name}`.

`sources.geojson` has no paging: geofed reads it once per query (cached), with gas → `plume_gas`,
sector → `sectors` and bbox pushed down, then filters, sorts and pages the features locally (so any
queryable can be sorted on). A source's time span is [timestamp_min, timestamp_max]; `datetime` matches
sources whose span overlaps it (evaluated locally: pushing it down would re-cluster fewer plumes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from geofed import errors
from geofed.query import FeatureQuery, RecordPage
from geofed.settings import get_settings
from providers.carbonmapper import pushdown, records
from providers.carbonmapper.client import CatalogClient, rest_bbox

N = {"type": "number"}
I = {"type": "integer"}  # noqa: E741
T = {"type": "string", "format": "date-time"}
FIELDS: dict[str, dict[str, Any]] = {
    "source_name": {"type": "string"},
    "gas": {"type": "string", "enum": list(records.GASES), "values": list(records.GASES)},
    "sector": {"type": "string", "enum": list(records.SECTORS), "values": list(records.SECTORS)},
    "plume_count": I, "date_count": I, "cluster_id": I, "emission_auto": N, "emission_uncertainty_auto": N,
    "persistence": N, "timestamp_min": T, "timestamp_max": T, "published_at_min": T, "published_at_max": T,
}
TEMPORAL = {"timestamp_min", "timestamp_max", "published_at_min", "published_at_max"}
RULES = {
    "gas": pushdown.Rule("plume_gas", many=False, enum=records.GASES),
    "sector": pushdown.Rule("sectors", enum=records.SECTORS),
    "source_name": pushdown.Rule("source_name", many=False),
}


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class SourceSource:
    collection_id = records.SOURCES
    title = "CarbonMapper sources"
    description = ("Persistent emission sources: clusters (DBSCAN, eps 100 m) of same-gas, same-sector plumes, "
                   "with plume counts, mean emission and persistence; each links to its plumes.")
    upstream = "carbonmapper"

    def __init__(self, **_: Any) -> None:
        self.client = CatalogClient()

    def fields(self) -> dict[str, dict[str, Any]]:
        return FIELDS

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.source_feature(record, get_settings().public_url)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.source_item(record, get_settings().public_url)

    async def query(self, q: FeatureQuery) -> RecordPage:
        node = pushdown.combined_filter(q, FIELDS)
        pd = pushdown.split(node, RULES, {}, FIELDS)
        if pd.empty:
            return RecordPage([], 0, False)
        params = pd.params()
        if q.bbox:
            params += rest_bbox(q.bbox)
        elif q.intersects:
            params += rest_bbox(pushdown.geometry_bounds(q.intersects))
        body = await self.client.sources(params)
        features = body.get("features") if isinstance(body, dict) else None
        if not isinstance(features, list):
            raise errors.UpstreamError("CarbonMapper returned malformed sources (no 'features')",
                                       upstream="carbonmapper")
        keep = pushdown.local_predicate(node, q, TEMPORAL)
        matched = [r for r in map(records.source_record, features)
                   if self._in_time(r, q) and self._in_bbox(r, q) and keep(self.to_feature(r))]
        for name, _ in q.sortby:
            if name not in FIELDS:
                raise errors.InvalidParameter(f"'sortby' property {name!r} is not a queryable of this collection",
                                              parameter="sortby")
        matched = pushdown.sort_records(matched, q.sortby, lambda r, n: _time(r.get(n)) if n in TEMPORAL
                                        else r.get(n))
        page = matched[q.offset:q.offset + q.limit]
        return RecordPage([] if q.hits_only else page, len(matched), q.offset + len(page) < len(matched))

    @staticmethod
    def _in_time(record: dict[str, Any], q: FeatureQuery) -> bool:
        if not q.has_time:
            return True
        first, last = _time(record.get("timestamp_min")), _time(record.get("timestamp_max"))
        if first is None or last is None:
            return False
        return (q.end is None or first <= q.end) and (q.start is None or last >= q.start)

    @staticmethod
    def _in_bbox(record: dict[str, Any], q: FeatureQuery) -> bool:
        point = record.get("point") or {}
        if not q.bbox or not point.get("coordinates"):
            return True
        lon, lat = point["coordinates"][:2]
        w, s, e, n = q.bbox
        return w <= lon <= e and s <= lat <= n

    async def get(self, identifier: str) -> dict[str, Any]:
        try:
            detail = await self.client.source(identifier)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"no source {identifier!r} in {self.collection_id}") from None
        return records.source_record_from_detail(detail)
