"""The example upstream's one collection."""

from __future__ import annotations

from typing import Any

from example_upstream import records
from example_upstream.client import StationsClient
from geofed import errors
from geofed.collection import Collection
from geofed.query import Batch, Param, Params, PushdownTable, UpstreamSource


class StationSource(UpstreamSource):
    collection = Collection(id="example-stations", title="Example methane stations",
                            description="Methane monitoring stations of an example upstream.",
                            keywords=("methane", "stations"), license="CC-BY-4.0",
                            interval=("2024-01-01T00:00:00Z", None))
    upstream = "stations"
    queryables = {
        "name": {"type": "string"},
        "network": {"type": "string", "enum": ["AGAGE", "NOAA-GML", "ICOS"]},
        "ch4_ppb": {"type": "number"},
        "measured_at": {"type": "string", "format": "date-time"},
    }
    table = PushdownTable(properties={"network": Param("network")},
                          bbox=lambda b: [("bbox", ",".join(map(str, b)))])
    time_fields = ("measured_at",)
    stac_names = records.STAC_NAMES
    page_size = 50

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        body = await StationsClient().search([*params, ("offset", str(offset)), ("limit", str(limit))])
        return Batch(body["items"], body["total"])

    async def get(self, identifier: str) -> dict[str, Any]:
        try:
            return await StationsClient().station(identifier)
        except errors.UpstreamNotFound:
            raise errors.NotFound(f"no station {identifier!r}") from None

    def to_feature(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_feature(record)

    def to_item(self, record: dict[str, Any]) -> dict[str, Any]:
        return records.to_item(record, self.context())
