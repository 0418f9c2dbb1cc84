"""The query engine (geofed.query) against an upstream simulator served in-process (httpx.ASGITransport).

The source is the example upstream's (tests/plugins), with a client of its own over the in-process transport;
its simulator cuts pages short at random lengths, as some real APIs do. Truth is computed here from the
simulator's unfiltered listing, never through the engine.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from geofed import cql2
from geofed.errors import InvalidParameter
from geofed.query import Batch, FeatureQuery, Params, engine
from geofed.query.order import SortKey

sys.path.insert(0, str(Path(__file__).resolve().parent / "plugins"))
from example_simulator import create_app  # noqa: E402
from example_upstream.sources import StationSource  # noqa: E402

KEY = {"api_key": "k"}


class InProcessStations(StationSource):
    """The example source reading its simulator through an in-process transport, counting upstream calls."""

    def __init__(self, uneven: bool = True) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(KEY, uneven=uneven)),
                                      base_url="http://sim", headers={"X-Api-Key": "k"})
        self.calls: list[Params] = []

    async def fetch(self, params: Params, offset: int, limit: int) -> Batch:
        self.calls.append(params)
        response = await self.http.get("/stations", params=[*params, ("offset", offset), ("limit", limit)])
        response.raise_for_status()
        body = response.json()
        return Batch(body["items"], body["total"])

    def context(self) -> Any:
        from geofed.query import ItemContext

        return ItemContext(self.collection.id, "http://geofed.test")


def truth() -> list[dict[str, Any]]:
    source = InProcessStations(uneven=False)

    async def everything() -> list[dict[str, Any]]:
        body = (await source.http.get("/stations", params={"limit": 50})).json()
        assert body["total"] == len(body["items"])
        return body["items"]

    return asyncio.run(everything())


def run(source: InProcessStations, **query: Any) -> Any:
    return asyncio.run(engine.run(source, FeatureQuery(**query)))


def page_through(source: InProcessStations, limit: int, **query: Any) -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        page = run(source, offset=offset, limit=limit, **query)
        ids += [r["station_id"] for r in page.records]
        offset += len(page.records)
        assert len(page.records) == limit or not page.more  # never a short page while more exist
        if not page.more:
            return ids


def test_pushed_down_and_local_parts_give_exact_pages_over_uneven_upstream_pages() -> None:
    rows = truth()
    expected = [r["station_id"] for r in rows if r["network"] == "ICOS" and r["ch4_ppb"] > 1950]
    assert 0 < len(expected) < len(rows)
    source = InProcessStations()
    node = cql2.parse_text("network = 'ICOS' AND ch4_ppb > 1950")
    assert page_through(source, 2, filter=node) == expected
    assert all(("network", "ICOS") in call for call in source.calls)  # the equality went upstream
    hits = run(source, filter=node, hits_only=True)
    assert hits.matched == len(expected) and hits.records == []


def test_fully_pushed_down_query_pages_by_the_upstream_offset() -> None:
    rows = truth()
    expected = [r["station_id"] for r in rows if r["network"] == "AGAGE"]
    source = InProcessStations()
    ids = page_through(source, 3, equals={"network": "AGAGE"})
    assert ids == expected
    first = run(source, limit=3, equals={"network": "AGAGE"})
    assert first.matched == len(expected)  # the upstream's total is numberMatched


def test_contradiction_answers_empty_without_an_upstream_call() -> None:
    source = InProcessStations()
    page = run(source, filter=cql2.parse_text("network = 'ICOS' AND network = 'AGAGE'"))
    assert page.records == [] and page.matched == 0 and source.calls == []


def test_sort_the_upstream_cannot_do_is_exact_across_pages() -> None:
    rows = truth()
    expected = [r["station_id"] for r in sorted(rows, key=lambda r: (-r["ch4_ppb"], r["station_id"]))]
    source = InProcessStations()
    got = page_through(source, 5, sortby=[("ch4_ppb", "desc")])
    assert sorted(got) == sorted(expected)
    ppb = {r["station_id"]: r["ch4_ppb"] for r in rows}
    assert [ppb[i] for i in got] == sorted(ppb.values(), reverse=True)


def test_stac_face_filters_and_sorts_in_the_item_vocabulary() -> None:
    rows = truth()
    since = "2024-05-01T00:00:00+00:00"
    expected = sorted(r["station_id"] for r in rows if r["measured_at"].replace("Z", "+00:00") > since)
    source = InProcessStations()
    stac = run(source, limit=100, face="stac", filter=cql2.parse_text(f"datetime > TIMESTAMP('{since}')"))
    assert sorted(i["id"] for i in stac.objects) == expected
    assert all("datetime" in i["properties"] for i in stac.objects)
    ogc = run(source, limit=100, face="ogc", filter=cql2.parse_text(f"measured_at > TIMESTAMP('{since}')"))
    assert sorted(f["id"] for f in ogc.objects) == expected
    # a feature-only name is not a STAC queryable (its items do not carry it): a 400 naming it, no upstream call
    calls = len(source.calls)
    with pytest.raises(InvalidParameter) as refused:
        run(source, limit=100, face="stac", filter=cql2.parse_text(f"measured_at > TIMESTAMP('{since}')"))
    assert refused.value.parameter == "filter" and "measured_at" in refused.value.message
    assert len(source.calls) == calls


def test_bbox_and_ids_are_evaluated_exactly() -> None:
    rows = truth()
    box = (-60.0, -10.0, 20.0, 40.0)
    inside = [r["station_id"] for r in rows if box[0] <= r["lon"] <= box[2] and box[1] <= r["lat"] <= box[3]]
    source = InProcessStations()
    assert page_through(source, 4, bbox=box) == inside
    wanted = [*inside[:2], rows[0]["station_id"]]
    got = run(source, limit=10, ids=wanted)
    assert sorted(r["station_id"] for r in got.records) == sorted(set(wanted))


@pytest.mark.parametrize(("a", "b", "direction", "a_first"), [
    (1, None, "asc", True), (1, None, "desc", True), (None, 1, "asc", False), (1, 2, "desc", False),
])
def test_missing_values_sort_last_in_either_direction(a: Any, b: Any, direction: str, a_first: bool) -> None:
    order = [("v", direction)]
    ka = SortKey.of({"properties": {"v": a}}, order)  # type: ignore[arg-type]
    kb = SortKey.of({"properties": {"v": b}}, order)  # type: ignore[arg-type]
    assert (ka < kb) is a_first


def test_ids_and_a_property_on_the_same_upstream_parameter_intersect() -> None:
    from geofed.query import Param, PushdownTable, split

    table = PushdownTable(properties={"name": Param("names")}, ids=Param("names"))
    disjoint = split(cql2.parse_text("name = 'B'"), FeatureQuery(ids=["A"]), table)
    assert disjoint.empty
    overlap = split(cql2.parse_text("name IN ('A', 'B')"), FeatureQuery(ids=["A", "C"]), table)
    assert overlap.params == [("names", "A")] and overlap.exact and not overlap.empty
