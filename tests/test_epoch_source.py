"""`epoch-plots` in-process: the source over the Epoch simulator through `httpx.ASGITransport` (no server), and
the records mapping on its own. The truth is the simulator's stream, read directly."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from geofed import cql2, errors, upstreams
from geofed.http.loop import run_sync
from geofed.query import FeatureQuery, ItemContext, engine
from geofed.settings import get_settings
from providers.epoch import records
from providers.epoch.sources import PlotSource
from simulators import DEMO_CREDENTIALS
from simulators.epoch import create_app

TOKEN = DEMO_CREDENTIALS["epoch"]["token"]
CTX = ItemContext("epoch-plots", "http://geofed.invalid")


@pytest.fixture(scope="module")
def sim() -> Iterator[Starlette]:
    app = create_app(DEMO_CREDENTIALS["epoch"], plots=3000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOFED_EPOCH_URL", "http://epoch.invalid")
        patch.setenv("GEOFED_EPOCH_TOKEN", TOKEN)
        get_settings.cache_clear()
        upstreams.close_all()
        upstreams.set_transport("epoch", httpx.ASGITransport(app=app))
        try:
            yield app
        finally:
            upstreams.close_all()
            upstreams.set_transport("epoch", None)
    get_settings.cache_clear()


def truth(sim: Starlette, **params: str) -> list[dict[str, Any]]:
    async def read() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as client:
            return await client.get("/fetch_biomass_emissions", params={"limit": "1000000", **params},
                                    headers={"Authorization": f"Bearer {TOKEN}"})

    response = run_sync(read())
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def query(source: PlotSource, **kwargs: Any) -> Any:
    return run_sync(source.query(FeatureQuery(**kwargs)))


# ----------------------------------------------------------------- declaration and mapping
def test_the_collection_options_are_the_constructor_defaults() -> None:
    defaults = {name: p.default for name, p in inspect.signature(PlotSource.__init__).parameters.items()
                if name != "self"}
    assert defaults == PlotSource.collection.options
    assert PlotSource.collection.stac()["extent"]["temporal"]["interval"] == [[None, None]]


def test_an_item_without_a_monitoring_window_gets_no_invented_time() -> None:
    plot = {"type": "Feature", "geometry": None,
            "properties": {"uuid": "u-1", "ingestion_date": "2024-01-10T00:00:00+00:00", "area": 1.5}}
    item = records.to_item(plot, CTX)
    assert item["properties"]["datetime"] == "2024-01-10T00:00:00Z" == item["properties"]["created"]
    assert "start_datetime" not in item["properties"] and "bbox" not in item
    bare = records.to_item({"type": "Feature", "geometry": None, "properties": {"uuid": "u-2"}}, CTX)
    assert bare["properties"]["datetime"] is None and "created" not in bare["properties"]


def test_items_carry_the_features_names_and_the_stac_queryables() -> None:
    plot = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            "properties": {"uuid": "u-3", "facility_id": "f", "monitoring_start": "2020-01-01T00:00:00+00:00",
                           "monitoring_end": "2024-01-10T00:00:00+00:00", "area": 2.0,
                           "thumbnail_url": "https://example.invalid/t.png", "annual_agb": {"mean": 1.0}}}
    feature, item = records.to_feature(plot), records.to_item(plot, CTX)
    names = {records.STAC_NAMES.get(k, k) for k in feature["properties"]} - {""}
    assert names <= set(item["properties"])
    assert item["properties"]["monitoring_start"] == item["properties"]["start_datetime"] == "2020-01-01T00:00:00Z"
    assert item["properties"]["datetime"] is None and item["bbox"] == [0.0, 0.0, 1.0, 1.0]
    assert item["assets"]["thumbnail"]["href"] == "https://example.invalid/t.png"


def test_the_plan_pushes_text_equalities_and_whole_days() -> None:
    q = FeatureQuery(filter=cql2.parse_text("facility_id = 'x' AND area > 2"), equals={"plotid": "p"},
                     start=dt.datetime(2018, 3, 1, 12, tzinfo=dt.UTC), end=dt.datetime(2018, 12, 31, 23, tzinfo=dt.UTC))
    plan = engine.prepare(PlotSource(), q).plan
    assert set(plan.params) == {("facility_id", "x"), ("plotid", "p"), ("monitoring_start", "2018-03-01"),
                                ("monitoring_end", "2019-01-01")}
    assert not plan.exact
    plan = engine.prepare(PlotSource(datetime_pushdown="none"), q).plan
    assert not any(name.startswith("monitoring") for name, _ in plan.params)
    stac = FeatureQuery(face="stac", filter=cql2.parse_text("facility_id = 'x' AND start_datetime > TIMESTAMP("
                                                            "'2019-01-01T00:00:00Z')"))
    assert engine.prepare(PlotSource(), stac).plan.params == [("facility_id", "x")]


# ----------------------------------------------------------------- against the simulator
def test_several_ids_are_all_found(sim: Starlette) -> None:
    plots = truth(sim, facility_id="coop-daloa-02", limit="3")
    wanted = [p["properties"]["uuid"] for p in plots]
    page = query(PlotSource(), ids=wanted, limit=10)
    assert sorted(r["properties"]["uuid"] for r in page.records) == sorted(wanted)
    one = query(PlotSource(), ids=wanted[:1], limit=10)
    assert [r["properties"]["uuid"] for r in one.records] == wanted[:1] and one.matched == 1


def test_a_count_of_plot_fields_takes_plots_only_and_keeps_pushed_equalities(sim: Starlette) -> None:
    expected = truth(sim, facility_id="trader-sinop")
    page = query(PlotSource(), equals={"facility_id": "trader-sinop"}, hits_only=True)
    assert page.matched == len(expected) > 0
    listed = query(PlotSource(), equals={"facility_id": "trader-sinop", "area": str(
        expected[1]["properties"]["area"])}, properties_wanted=["uuid", "area"], limit=5)
    assert [r["properties"]["uuid"] for r in listed.records] == [expected[1]["properties"]["uuid"]]
    assert "facility_id" not in listed.records[0]["properties"]  # a plots_only record: Epoch applied it


def test_the_stac_face_filters_and_sorts_in_the_item_vocabulary(sim: Starlette) -> None:
    plots = truth(sim, facility_id="lbc-ashanti-02")
    cut = "2020-01-01T00:00:00+00:00"
    expected = [p for p in plots if p["properties"]["monitoring_start"] >= cut]
    node = cql2.parse_text("facility_id = 'lbc-ashanti-02' AND start_datetime >= TIMESTAMP('2020-01-01T00:00:00Z')")
    page = query(PlotSource(), face="stac", filter=node, sortby=[("created", "desc")], limit=7)
    assert page.matched == len(expected) > 7
    best = sorted(expected, key=lambda p: p["properties"]["ingestion_date"], reverse=True)[:7]
    created = [i["properties"]["created"] for i in page.objects]
    assert created == sorted(created, reverse=True)
    assert created[0] == best[0]["properties"]["ingestion_date"].replace("+00:00", "Z")
    assert all(i["collection"] == "epoch-plots" and i["properties"]["datetime"] is None for i in page.objects)
    with pytest.raises(errors.InvalidParameter, match="start_datetime"):  # features have no start_datetime
        query(PlotSource(), filter=node, limit=3)
