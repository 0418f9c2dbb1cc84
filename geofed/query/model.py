"""The query model both faces hand to a collection's feature source, and what a source answers.

A `FeatureSource` (one per geofed collection, `providers/<upstream>/sources.py`) answers `FeatureQuery`s with
`RecordPage`s of upstream records, and maps a record to a GeoJSON feature (OGC face) and a STAC item (STAC face)
through the upstream's `records.py`. The engine (`geofed.query.engine`) does the rest: pushdown, local
evaluation, sorting and exact paging.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from geofed.query.parse import BBox

SortBy = list[tuple[str, Literal["asc", "desc"]]]
Face = Literal["ogc", "stac"]


@dataclass
class FeatureQuery:
    offset: int = 0
    limit: int = 10
    bbox: BBox | None = None
    intersects: dict[str, Any] | None = None  # GeoJSON geometry (STAC `intersects`)
    start: dt.datetime | None = None  # datetime interval, both ends inclusive; None = open
    end: dt.datetime | None = None
    equals: dict[str, Any] = field(default_factory=dict)  # property=value from the query string
    filter: Any | None = None  # pygeofilter AST (CQL2), in the vocabulary of `face`
    sortby: SortBy = field(default_factory=list)  # in the vocabulary of `face`
    ids: list[str] | None = None
    hits_only: bool = False
    properties_wanted: list[str] | None = None  # None = all
    skip_geometry: bool = False
    face: Face = "ogc"  # whose property names `filter`, `equals` and `sortby` use

    @property
    def has_time(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass
class RecordPage:
    records: list[dict[str, Any]]
    matched: int | None = None  # None = unknown (counting would cost upstream calls)
    more: bool = False  # True when more matches exist after this page
    # the records as the asking face's objects (features or items), when the engine already mapped them
    objects: list[dict[str, Any]] | None = None


class FeatureSource(Protocol):
    """One collection of one upstream, as both faces see it (see `geofed.query.engine.EngineSource` for the
    declarative part the engine reads)."""

    collection_id: str
    upstream: str

    def fields(self, face: Face = "ogc") -> dict[str, dict[str, Any]]:
        """Queryable properties of that face: name → JSON schema ({"type": ..., "enum": [...], "format": ...})."""
        ...

    async def query(self, q: FeatureQuery) -> RecordPage: ...

    async def get(self, identifier: str) -> dict[str, Any]:
        """One upstream record; raises geofed.errors.NotFound."""
        ...

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]: ...

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]: ...
