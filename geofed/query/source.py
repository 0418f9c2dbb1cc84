"""`UpstreamSource`: the base of every collection's feature source, wired to the engine.

A concrete source declares, as class attributes, its `collection` (the one `Collection` declaration), the
`upstream` name, the OGC-face `queryables`, the `table` of what its upstream evaluates, the feature's
`time_fields`, `stac_names` (from `records.STAC_NAMES`) and `page_size`; and implements `fetch()` (one upstream
page), `get()`, and the two mappings through `records`. `query()` is the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from geofed.collection import Collection
from geofed.query.engine import run, stac_fields
from geofed.query.model import Face, FeatureQuery, RecordPage
from geofed.query.paging import Batch
from geofed.query.pushdown import Params, PushdownTable


@dataclass(frozen=True)
class ItemContext:
    """What `records.to_item(record, ctx)` needs besides the record: the geofed collection it is listed in
    and the public URL its links are built from."""

    collection_id: str
    public_url: str


class UpstreamSource:
    collection: ClassVar[Collection]
    upstream: ClassVar[str]
    queryables: ClassVar[dict[str, dict[str, Any]]] = {}  # OGC face: feature property → JSON schema
    stac_queryables: ClassVar[dict[str, dict[str, Any]]] = {}  # STAC-only item properties (besides datetime)
    table: ClassVar[PushdownTable] = PushdownTable()
    time_fields: ClassVar[tuple[str, ...]] = ()
    stac_names: ClassVar[dict[str, str]] = {}  # feature property → STAC item property ("" = not on items)
    page_size: ClassVar[int] = 100
    time_field: ClassVar[str | None] = None  # pygeoapi's `time_field` (defaults to time_fields[0])
    # feature properties that `properties=` may select although they are not queryable (objects, arrays)
    selectable: ClassVar[tuple[str, ...]] = ()

    @property
    def collection_id(self) -> str:
        return self.collection.id

    def context(self) -> ItemContext:
        from geofed.settings import get_settings

        return ItemContext(self.collection.id, get_settings().public_url)

    def fields(self, face: Face = "ogc") -> dict[str, dict[str, Any]]:
        if face == "ogc":
            return dict(self.queryables)
        return stac_fields(self.queryables, self.stac_names, self.stac_queryables)

    async def query(self, q: FeatureQuery) -> RecordPage:
        return await run(self, q)

    async def live_interval(self) -> tuple[str | None, str | None] | None:
        """The temporal extent as the upstream tells it now (RFC 3339 ends), for upstreams that document none
        but can say it cheaply; None: the declaration's `interval` stands."""
        return None

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        raise NotImplementedError

    async def get(self, identifier: str) -> dict[str, Any]:
        raise NotImplementedError

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError
