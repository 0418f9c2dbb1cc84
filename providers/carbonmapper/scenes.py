"""`carbonmapper-scenes`: scenes from `GET /api/v1/catalog/scenes/annotated` (anonymous), one via `names=`.

Scenes/annotated lists only scenes "eligible for null detection" (cloud cover <= 25 %) unless told
otherwise; geofed asks for `cloud_cover_pct_max=<include_cloud_max>` (100 by default, configurable in the
resource's `options`) so that every plume's scene link resolves.
Pushed down: bbox, datetime (on `timestamp`), instrument → `instruments`, name → `names`, uuid → `ids`,
ids, sort by timestamp; the rest is evaluated locally with exact paging.
"""

from __future__ import annotations

from typing import Any

from geofed import errors
from geofed.errors import InvalidParameter
from geofed.query import FeatureQuery, RecordPage
from geofed.settings import get_settings
from providers.carbonmapper import pushdown, records
from providers.carbonmapper.client import CatalogClient, rest_bbox

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}
FIELDS: dict[str, dict[str, Any]] = {
    "name": S, "uuid": {"type": "string", "format": "uuid"},
    "instrument": {"type": "string", "enum": list(records.INSTRUMENTS), "values": list(records.INSTRUMENTS)},
    "timestamp": {"type": "string", "format": "date-time"}, "mission_phase": S, "plume_count": I,
    "published_plume_count": I, "deleted_plume_count": I, "hidden_plume_count": I, "is_quick_view": B,
    "is_quick_look": B,
}
RULES = {
    "instrument": pushdown.Rule("instruments", enum=records.INSTRUMENTS),
    "name": pushdown.Rule("names"),
    "uuid": pushdown.Rule("ids"),
}


class SceneSource:
    collection_id = records.SCENES
    title = "CarbonMapper scenes"
    description = ("Published CarbonMapper scenes (one instrument overpass each) with their footprint and plume "
                   "counts, including scenes without plumes (null detections).")
    upstream = "carbonmapper"

    def __init__(self, include_cloud_max: int = 100, **_: Any) -> None:
        self.client = CatalogClient()
        self.include_cloud_max = int(include_cloud_max)

    def fields(self) -> dict[str, dict[str, Any]]:
        return FIELDS

    def sortable(self) -> set[str]:
        """STAC item fields the upstream sorts on: `sort=asc|desc` orders by `timestamp`, the item's `datetime`."""
        return {"datetime"}

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.scene_feature(record, get_settings().public_url)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.scene_item(record, get_settings().public_url)

    async def query(self, q: FeatureQuery) -> RecordPage:
        node = pushdown.combined_filter(q, FIELDS)
        pd = pushdown.split(node, RULES, {}, FIELDS)
        params = [*pd.params(), ("cloud_cover_pct_max", str(self.include_cloud_max))]
        if q.ids:
            params += [("names", i) for i in q.ids]
        if q.bbox:
            params += rest_bbox(q.bbox)
        elif q.intersects:
            params += rest_bbox(pushdown.geometry_bounds(q.intersects))
        if interval := pushdown.rfc3339_interval(q):
            params.append(("datetime", interval))
        params.append(("sort", _sort(q.sortby)))

        async def fetch(offset: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
            body = await self.client.scenes([*params, ("limit", str(max(1, limit))), ("offset", str(offset))])
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise errors.UpstreamError("CarbonMapper returned a malformed scene list (no 'items')",
                                           upstream="carbonmapper")
            return items, body.get("count")

        keep = pushdown.local_predicate(node, q, {"timestamp"})
        return await pushdown.page(fetch, pd, q, lambda r: keep(self.to_feature(r)), pd.exact and not q.intersects)

    async def get(self, identifier: str) -> dict[str, Any]:
        body = await self.client.scenes([("names", identifier), ("cloud_cover_pct_max", str(self.include_cloud_max)),
                                         ("limit", "1")])
        items = body.get("items") if isinstance(body, dict) else None
        if not items:
            # observed.md: scene publication can lag plume publication, so a plume's scene may be missing
            raise errors.NotFound(f"no scene {identifier!r} in {self.collection_id} (it may not be published yet)")
        return items[0]


def _sort(sortby: list[tuple[str, str]]) -> str:
    if not sortby:
        return "desc"
    if len(sortby) > 1 or sortby[0][0] not in ("timestamp", "datetime"):
        raise InvalidParameter("'sortby' supports only timestamp (ascending or descending) for this collection",
                               parameter="sortby")
    return sortby[0][1]
