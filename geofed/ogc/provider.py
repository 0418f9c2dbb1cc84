"""The pygeoapi feature provider all geofed collections share.

A concrete provider only names its `FeatureSource` (see `geofed.query`): e.g.

    class PlumesProvider(UpstreamFeatureProvider):
        source_class = PlumeSource

pygeoapi instantiates providers on every request, so `__init__` stays cheap: sources must keep pools and
caches at module level (they get them from `geofed.upstreams.http(name)`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygeoapi.provider.base import (
    BaseProvider,
    ProviderGenericError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)

from geofed import cql2, errors
from geofed.http.loop import run_sync
from geofed.query import FeatureQuery, FeatureSource, parse_bbox, parse_interval


def provider_error(exc: errors.GeofedError) -> ProviderGenericError:
    """A pygeoapi error carrying geofed's status and message (pygeoapi shows only `user_msg`)."""
    if isinstance(exc, errors.NotFound | errors.UpstreamNotFound):
        return ProviderItemNotFoundError(user_msg=exc.message)
    if exc.status == 400:
        return ProviderInvalidQueryError(user_msg=exc.message)
    err = ProviderGenericError(user_msg=exc.message)
    err.http_status_code = exc.status  # type: ignore[assignment]
    err.ogc_exception_code = exc.code
    return err


class UpstreamFeatureProvider(BaseProvider):
    source_class: ClassVar[type]

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.source: FeatureSource = self.source_class(**(provider_def.get("options") or {}))
        # pygeoapi's queryables read allowed values from `values`; sources describe them as JSON Schema `enum`
        self._fields = {
            name: {**schema, "values": schema["enum"]} if "enum" in schema and "values" not in schema else schema
            for name, schema in self.source.fields().items()
        }
        # pygeoapi accepts `properties=` names from `properties` ∪ fields: add what is selectable but not queryable
        selectable = list(getattr(self.source, "selectable", ()))
        if selectable:
            self.properties = [*self._fields, *selectable]
        self.id_field = "id"
        self.time_field = provider_def.get("time_field")

    def get_fields(self) -> dict[str, dict[str, Any]]:
        return self._fields

    def query(
        self,
        offset: int = 0,
        limit: int = 10,
        resulttype: str = "results",
        bbox: list[float] | None = None,
        datetime_: str | None = None,
        properties: list[tuple[str, Any]] | None = None,
        sortby: list[dict[str, str]] | None = None,
        select_properties: list[str] | None = None,
        skip_geometry: bool = False,
        q: str | None = None,
        filterq: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        try:
            fq = FeatureQuery(
                offset=int(offset),
                limit=int(limit),
                bbox=parse_bbox(bbox or None),
                equals=dict(properties or []),
                filter=cql2.fix_parsed(filterq),
                sortby=[(s["property"], "desc" if s.get("order") == "-" else "asc") for s in (sortby or [])],
                hits_only=resulttype == "hits",
                properties_wanted=list(select_properties) or None if select_properties else None,
                skip_geometry=bool(skip_geometry),
                face="ogc",
            )
            fq.start, fq.end = parse_interval(datetime_)
            page = run_sync(self.source.query(fq))
        except errors.GeofedError as exc:
            raise provider_error(exc) from None
        mapped = page.objects if page.objects is not None else [self.source.to_feature(r) for r in page.records]
        features = [] if fq.hits_only else [self._shape(f, fq) for f in mapped]
        result: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": features,
            "numberReturned": len(features),
        }
        if page.matched is not None:
            result["numberMatched"] = page.matched
        return result

    def get(self, identifier: str, **kwargs: Any) -> dict[str, Any]:
        try:
            record = run_sync(self.source.get(str(identifier)))
        except errors.GeofedError as exc:
            raise provider_error(exc) from None
        return self.source.to_feature(record)

    @staticmethod
    def _shape(feature: dict[str, Any], fq: FeatureQuery) -> dict[str, Any]:
        if fq.properties_wanted:
            props = feature.get("properties") or {}
            feature = {**feature, "properties": {k: props[k] for k in fq.properties_wanted if k in props}}
        if fq.skip_geometry:
            feature = {**feature, "geometry": None}
        return feature

    def __repr__(self) -> str:
        return f"<{type(self).__name__}> {self.source.collection_id}"
