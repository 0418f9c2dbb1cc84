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
    wanted = [records.to_feature(p)["id"] for p in plots]
    page = query(PlotSource(), ids=wanted, limit=10)
    assert sorted(records.to_feature(r)["id"] for r in page.records) == sorted(wanted)
    one = query(PlotSource(), ids=wanted[:1], limit=10)
    assert [records.to_feature(r)["id"] for r in one.records] == wanted[:1] and one.matched == 1


def test_plot_fields_take_plots_only_and_keep_pushed_equalities(sim: Starlette) -> None:
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


# ----------------------------------------------------------------- issue 14: what the doc says, not what we assumed
def configure(sim: Starlette, **config: Any) -> None:
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://sim") as client:
            return await client.post("/_sim/config", json=config)

    run_sync(post()).raise_for_status()


def walk(source: PlotSource, limit: int, **kwargs: Any) -> list[str]:
    """Every page of a query, in order, as feature ids (the cursor is resumed and re-opened along the way)."""
    got: list[str] = []
    offset = 0
    while True:
        page = query(source, limit=limit, offset=offset, **kwargs)
        got += [source.to_feature(r)["id"] for r in page.records]
        if not page.more:
            return got
        offset += limit


@pytest.mark.parametrize("condition", [{}, {"filter": cql2.parse_text("area > 1.5")}])
def test_pages_stay_exact_when_epoch_changes_the_order_between_calls(sim: Starlette, condition: Any) -> None:
    """The doc promises no order: the simulator shuffles every answer. The cursor re-opens the stream past its
    first `limit`; it notices the rows it would skip are not the rows it served and recovers exactly."""
    keep = (lambda p: p["properties"]["area"] > 1.5) if condition else (lambda p: True)
    expected = [p for p in truth(sim, facility_id="lbc-sefwi-01") if keep(p)]
    assert 60 < len(expected) < 600
    configure(sim, row_order="shuffle")
    try:
        got = walk(PlotSource(min_upstream_limit=1), 10, equals={"facility_id": "lbc-sefwi-01"}, **condition)
    finally:
        configure(sim, row_order="stable")
    assert len(got) == len(set(got)), "a plot was served twice"
    assert sorted(got) == sorted(records.to_feature(p)["id"] for p in expected), "a plot was skipped"


def test_an_order_change_can_be_refused_instead(sim: Starlette) -> None:
    configure(sim, row_order="shuffle")
    try:
        with pytest.raises(errors.UpstreamError, match="order"):
            walk(PlotSource(min_upstream_limit=1, reordered="error"), 10, equals={"facility_id": "lbc-ashanti-02"})
    finally:
        configure(sim, row_order="stable")


def test_uuid_is_not_a_documented_column_and_ids_resolve_through_plotid(sim: Starlette) -> None:
    with pytest.raises(httpx.HTTPStatusError):  # the simulator follows the doc: uuid is no batch-table column
        truth(sim, uuid=truth(sim, limit="1")[0]["properties"]["uuid"])
    plot = truth(sim, facility_id="coop-daloa-02", limit="4")[3]
    page = query(PlotSource(), equals={"facility_id": "coop-daloa-02"}, limit=4)
    feature = records.to_feature(page.records[3])
    assert feature["properties"]["uuid"] == plot["properties"]["uuid"]
    found = run_sync(PlotSource().get(feature["id"]))
    assert found["properties"]["uuid"] == plot["properties"]["uuid"]
    assert feature["id"] == f"{plot['properties']['plotid']}~{plot['properties']['uuid']}"
    listed = query(PlotSource(), ids=[feature["id"]], limit=5)  # one id: pushed down through its plotid
    assert [records.to_feature(r)["id"] for r in listed.records] == [feature["id"]]
    with pytest.raises(errors.NotFound):
        run_sync(PlotSource().get(f"{plot['properties']['plotid']}~00000000-0000-4000-8000-000000000000"))
    with pytest.raises(errors.NotFound):  # a bare uuid (an id geofed gave before): Epoch refuses uuid → 404
        run_sync(PlotSource().get(plot["properties"]["uuid"]))


def test_a_count_counts_what_the_pages_return(sim: Starlette) -> None:
    """Plots whose statistics are not computed yet come only with plots_only=true: a count must not include
    them when the pages (default mode) do not."""
    pending = truth(sim, filename="cocoa-civ-2025", plots_only="true")
    assert pending and truth(sim, filename="cocoa-civ-2025") == []
    everything = truth(sim)
    hits = query(PlotSource(), hits_only=True)
    assert hits.matched == len(everything)
    page = query(PlotSource(), equals={"collection_id": "cocoa-civ-2025"}, limit=5)
    counted = query(PlotSource(), equals={"collection_id": "cocoa-civ-2025"}, hits_only=True)
    assert page.records == [] and counted.matched == 0


def test_the_aggregate_limit_is_a_setting_and_the_description_says_what_it_covers(
        sim: Starlette, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.epoch import options, processes

    described = processes.PROCESS_METADATA["description"]["en"]
    assert "GEOFED_EPOCH_AGGREGATE_LIMIT" in described and "statistics" in described
    monkeypatch.setenv("GEOFED_EPOCH_AGGREGATE_LIMIT", "50")
    options.get_options.cache_clear()
    try:
        processor = processes.AggregateEmissionsProcessor({"name": "epoch-aggregate-emissions"})
        with pytest.raises(errors.InvalidParameter, match="GEOFED_EPOCH_AGGREGATE_LIMIT=50"):
            run_sync(processor.run({"collection": "soy-mt-2023"}))
        small = run_sync(processor.run({"collection": "soy-mt-2023", "filters": {
            "plotid": truth(sim, filename="soy-mt-2023", limit="1")[0]["properties"]["plotid"]}}))[1]
        assert small["properties"]["aggregate_plot_count"] == 1
    finally:
        monkeypatch.delenv("GEOFED_EPOCH_AGGREGATE_LIMIT")
        options.get_options.cache_clear()
