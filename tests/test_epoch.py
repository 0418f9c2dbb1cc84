"""Epoch end to end: `epoch-plots` and `epoch-aggregate-emissions` through a running geofed server.

The truth is the Epoch simulator's own stream, read directly with the demo token; expected values are computed
here from it. Every test uses a query no other test makes, because geofed keeps a query's stream open for paging.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from typing import Any

import httpx
import pytest
import shapely.geometry
from owslib.ogcapi.features import Features
from owslib.ogcapi.processes import Processes
from pystac_client import Client

from simulators import DEMO_CREDENTIALS

ITEMS = "/collections/epoch-plots/items"
EXECUTE = "/processes/epoch-aggregate-emissions/execution"
UPSTREAM = "/fetch_biomass_emissions"
AUTH = {"Authorization": f"Bearer {DEMO_CREDENTIALS['epoch']['token']}"}
ANNUAL = ("annual_agb", "annual_bgb", "annual_soc", "annual_lc")


def raw_upstream(sims: Any, **params: str) -> bytes:
    response = sims.get("epoch", UPSTREAM, params={"limit": "1000000", **params}, headers=AUTH, timeout=120)
    response.raise_for_status()
    return response.content


def upstream(sims: Any, **params: str) -> list[dict[str, Any]]:
    """The simulator's plots for these upstream parameters, annual_* decoded here (the test's own reading)."""
    plots = [json.loads(line) for line in raw_upstream(sims, **params).splitlines() if line.strip()]
    for plot in plots:
        for name in ANNUAL:
            value = plot["properties"].get(name)
            if isinstance(value, str):
                plot["properties"][name] = json.loads(value)
    return plots


def plot_id(plot: dict[str, Any]) -> str:
    """geofed's id of a plot: `{plotid}~{uuid}` (Epoch looks plots up by `plotid`, a documented column)."""
    return f"{plot['properties']['plotid']}~{plot['properties']['uuid']}"


def ids(plots: list[dict[str, Any]]) -> list[str]:
    return [plot_id(p) for p in plots]


def follow(geofed: Any, params: dict[str, Any], max_pages: int = 400) -> tuple[list[dict[str, Any]], int]:
    """Every feature of a query, following the server's `next` links; returns (features, pages read)."""
    features: list[dict[str, Any]] = []
    url: str | None = f"{geofed.url}{ITEMS}"
    query: dict[str, Any] | None = {"f": "json", **params}
    pages = 0
    while url and pages < max_pages:
        response = httpx.get(url, params=query, timeout=120)
        assert response.status_code == 200, response.text
        body = response.json()
        features.extend(body["features"])
        pages += 1
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        query = None
    assert pages < max_pages, "paging did not end"
    return features, pages


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


# ----------------------------------------------------------------- the collection
def test_filtered_query_counts_and_ids_equal_the_simulator(geofed: Any, sims: Any) -> None:
    filters = {"collection_id": "cocoa-gha-2024", "facility_id": "lbc-ashanti-02"}
    truth = upstream(sims, **filters)
    assert len(truth) > 1000
    features, _ = follow(geofed, {**filters, "limit": 1000})
    assert sorted(f["id"] for f in features) == sorted(ids(truth))
    hits = geofed.get(ITEMS, params={**filters, "resulttype": "hits", "f": "json"}).json()
    assert hits["numberMatched"] == len(truth)

    by_id = {plot_id(p): p for p in truth}
    feature = features[0]
    plot = by_id[feature["id"]]
    assert feature["geometry"] == plot["geometry"] and feature["geometry"]["type"] == "Polygon"
    assert feature["properties"] == plot["properties"]  # every documented property kept, annual_* decoded
    assert isinstance(feature["properties"]["metadata"], dict)
    for name in ANNUAL:
        assert isinstance(feature["properties"][name], dict)


def test_hits_count_the_plots_the_pages_return(geofed: Any, sims: Any) -> None:
    """`cocoa-civ-2025`'s statistics are not computed yet: Epoch lists its plots only with plots_only=true."""
    assert upstream(sims, filename="cocoa-civ-2025", plots_only="true")
    assert upstream(sims, filename="cocoa-civ-2025") == []
    query = {"f": "json", "collection_id": "cocoa-civ-2025"}
    page = geofed.get(ITEMS, params={**query, "limit": 5}).json()
    hits = geofed.get(ITEMS, params={**query, "resulttype": "hits"}).json()
    assert page["features"] == [] and hits["numberMatched"] == page["numberMatched"] == 0


def test_datetime_bbox_and_cql2_are_exact(geofed: Any, sims: Any) -> None:
    truth = upstream(sims, filename="soy-mt-2023")
    start, end = when("2018-03-01T00:00:00+00:00"), when("2018-12-31T23:59:59+00:00")
    box = (-56.4, -13.4, -55.4, -12.2)
    area = shapely.geometry.box(*box)
    expected = sorted(
        plot_id(p) for p in truth
        if when(p["properties"]["monitoring_start"]) <= end and when(p["properties"]["monitoring_end"]) >= start
        and area.intersects(shapely.geometry.shape(p["geometry"])) and p["properties"]["area"] > 12
    )
    assert 20 < len(expected) < 1500
    features, _ = follow(geofed, {
        "collection_id": "soy-mt-2023", "datetime": "2018-03-01T00:00:00Z/2018-12-31T23:59:59Z",
        "bbox": ",".join(map(str, box)), "filter": "area > 12", "limit": 500,
    })
    assert sorted(f["id"] for f in features) == expected
    # the datetime went upstream as whole days (a superset); the exact window was applied by geofed
    query = sims.log("epoch", UPSTREAM)[-1]["query"]
    assert "monitoring_start=2018-03-01" in query and "monitoring_end=2019-01-01" in query


def test_paging_by_13_returns_every_plot_exactly_once(geofed: Any, sims: Any) -> None:
    truth = [p for p in upstream(sims, collection_id="cocoa-civ-2024") if p["properties"]["area"] > 5.5]
    assert 100 < len(truth) < 600
    features, pages = follow(geofed, {"filter": "collection_id = 'cocoa-civ-2024' AND area > 5.5", "limit": 13})
    got = [f["id"] for f in features]
    assert len(got) == len(set(got)) == len(truth)
    assert got == ids(truth)  # the upstream's order, kept
    assert pages >= len(truth) // 13


def test_sequential_pages_reuse_one_upstream_stream(geofed: Any, sims: Any) -> None:
    truth = ids(upstream(sims, collection_id="soy-mt-2023", facility_id="trader-sinop"))[:13 * 12]
    sims.clear("epoch")
    got: list[str] = []
    for page in range(12):
        body = geofed.get(ITEMS, params={"f": "json", "collection_id": "soy-mt-2023",
                                         "facility_id": "trader-sinop", "limit": 13, "offset": 13 * page}).json()
        assert body["numberReturned"] == 13
        got += [f["id"] for f in body["features"]]
    assert got == truth
    calls = [c for c in sims.log("epoch", UPSTREAM) if "aggregate=false" in c["query"]]
    assert len(calls) == 1, [c["query"] for c in calls]  # page 12 continued the stream page 1 opened
    assert "limit=" in calls[0]["query"]
    # numberMatched (what QGIS shows as the layer's size): one aggregate call, for every page of the query
    counts = [c for c in sims.log("epoch", UPSTREAM) if "aggregate=true" in c["query"]]
    assert len(counts) == 1 and body["numberMatched"] == len(ids(upstream(
        sims, collection_id="soy-mt-2023", facility_id="trader-sinop")))


def test_a_slowly_dripping_stream_still_gives_exact_pages(geofed: Any, sims: Any) -> None:
    truth = ids(upstream(sims, facility_id="lbc-ashanti-02", limit="30"))
    sims.faults("epoch", drip_ms=15, path=UPSTREAM)  # 8 KB chunks (≈ 5 plots, lines split) every 15 ms
    features = Features(geofed.url, timeout=60)
    query = {"facility_id": "lbc-ashanti-02", "datetime": "2017-06-01T00:00:00Z/..", "limit": 12}
    first = features.collection_items("epoch-plots", **query)
    second = features.collection_items("epoch-plots", **query, offset=12)
    assert [f["id"] for f in first["features"] + second["features"]] == truth[:24]


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="REQUIRES-TOOL: ogrinfo (gdal-bin)")
def test_ogrinfo_counts_a_filtered_layer(geofed: Any, sims: Any) -> None:
    truth = upstream(sims, facility_id="lbc-sefwi-01", filename="cocoa-gha-2024")
    info = subprocess.run(["timeout", "120", "ogrinfo", "-ro", "-so", "-where", "facility_id = 'lbc-sefwi-01'",
                           f"OAPIF:{geofed.url}", "epoch-plots"], capture_output=True, text=True, check=True).stdout
    assert int(info.split("Feature Count:")[1].split()[0]) == len(truth) > 0
    assert "Polygon" in info and "luc_tco2eyear: Real" in info


def test_get_one_plot_and_unknown_id(geofed: Any, sims: Any) -> None:
    plot = upstream(sims, collection_id="cocoa-gha-2024", facility_id="lbc-sefwi-01", limit="3")[2]
    ident = plot_id(plot)
    sims.clear("epoch")
    feature = geofed.get(f"/collections/epoch-plots/items/{ident}", params={"f": "json"}).json()
    assert feature["id"] == ident and feature["properties"] == plot["properties"]
    # looked up through plotid, a column the doc names (the simulator refuses `uuid`, which it does not name)
    assert all("uuid=" not in c["query"] for c in sims.log("epoch", UPSTREAM))
    for missing in (f"{plot['properties']['plotid']}~00000000-0000-4000-8000-000000000000",
                    plot["properties"]["uuid"]):  # a bare uuid (ids before): Epoch refuses uuid → unknown
        assert geofed.get(f"/collections/epoch-plots/items/{missing}", params={"f": "json"}).status_code == 404


def test_plot_fields_only_take_the_plots_only_path(geofed: Any, sims: Any) -> None:
    truth = upstream(sims, facility_id="coop-duekoue-03", limit="7")
    body = geofed.get(ITEMS, params={"f": "json", "facility_id": "coop-duekoue-03", "properties": "uuid,area",
                                     "limit": 7}).json()
    assert [f["id"] for f in body["features"]] == ids(truth)
    assert all(set(f["properties"]) == {"uuid", "area"} for f in body["features"])
    assert "plots_only=true" in sims.log("epoch", UPSTREAM)[-1]["query"]


@pytest.mark.parametrize("encoding", ["object", "string", "mixed"])
def test_annual_fields_arrive_as_objects_whichever_form(geofed: Any, sims: Any, encoding: str) -> None:
    sims.post("epoch", "/_sim/config", json={"annual_encoding": encoding}).raise_for_status()
    try:
        raw = [json.loads(line) for line in raw_upstream(sims, facility_id="coop-soubre-01", limit="4").splitlines()]
        forms = {type(r["properties"]["annual_agb"]) for r in raw}
        assert forms == {"object": {dict}, "string": {str}, "mixed": {dict, str}}[encoding]
        body = geofed.get(ITEMS, params={"f": "json", "facility_id": "coop-soubre-01", "limit": 4,
                                         "datetime": f"../2024-01-0{len(encoding)}T00:00:00Z"}).json()
    finally:
        sims.post("epoch", "/_sim/config", json={"annual_encoding": "string"})
    assert [f["id"] for f in body["features"]] == ids(raw)
    for feature, plot in zip(body["features"], raw, strict=True):
        for name in ANNUAL:
            value = plot["properties"][name]
            assert feature["properties"][name] == (json.loads(value) if isinstance(value, str) else value)


def test_stac_face_serves_the_same_plots_as_valid_items(geofed: Any, sims: Any, stac_validate: Any) -> None:
    truth = upstream(sims, filename="cocoa-gha-2024")
    box = (-1.75, 6.55, -1.5, 6.8)
    area = shapely.geometry.box(*box)
    expected = {plot_id(p) for p in truth if p["properties"]["monitoring_start"] < "2020"
                and area.intersects(shapely.geometry.shape(p["geometry"]))}
    assert 10 < len(expected) < 400
    search = Client.open(f"{geofed.url}/stac/", timeout=120).search(
        collections=["epoch-plots"], bbox=list(box), datetime="2018-01-01T00:00:00Z/2019-12-31T23:59:59Z",
        max_items=500, limit=50)
    found = list(search.items_as_dicts())
    assert {i["id"] for i in found} == expected

    by_id = {plot_id(p): p for p in truth}
    for item in found[:5]:
        assert stac_validate(item) == []
        plot = by_id[item["id"]]
        props = item["properties"]
        assert item["collection"] == "epoch-plots" and item["geometry"] == plot["geometry"]
        assert props["datetime"] is None
        assert when(props["start_datetime"].replace("Z", "+00:00")) == when(plot["properties"]["monitoring_start"])
        assert when(props["end_datetime"].replace("Z", "+00:00")) == when(plot["properties"]["monitoring_end"])
        assert props["luc_tco2eyear"] == plot["properties"]["luc_tco2eyear"]
        assert props["annual_agb"] == plot["properties"]["annual_agb"]


def test_sorting_and_an_unterminated_last_line(geofed: Any, sims: Any) -> None:
    truth = upstream(sims, facility_id="trader-sinop", monitoring_start="2019-02-01")
    expected = ids(sorted(truth, key=lambda p: -p["properties"]["area"])[:6])
    sims.post("epoch", "/_sim/config", json={"final_newline": False}).raise_for_status()
    try:
        assert not raw_upstream(sims, facility_id="trader-sinop", limit="2").endswith(b"\n")
        body = geofed.get(ITEMS, params={"f": "json", "facility_id": "trader-sinop", "sortby": "-area", "limit": 6,
                                         "datetime": "2019-02-01T00:00:00Z/.."}).json()
    finally:
        sims.post("epoch", "/_sim/config", json={"final_newline": True})
    assert [f["id"] for f in body["features"]] == expected  # the last plot counted too
    assert body["numberMatched"] == len(truth)


def cql2_condition(name: str, schema: dict[str, Any], value: Any) -> str:
    """`name` compared with the value an item carries, in CQL2 text (datetimes as TIMESTAMPs)."""
    if value is None:
        return f"{name} IS NULL"
    if schema.get("format") == "date-time":
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
        return f"{name} = TIMESTAMP('{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}')"
    if schema.get("type") in ("number", "integer"):
        return f"{name} = {value!r}"
    return f"{name} = '{value}'"


def type_fits(schema: dict[str, Any], value: Any) -> bool:
    kind = schema.get("type")
    if value is None:
        return True
    if kind in ("number", "integer"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return kind is None


@pytest.mark.parametrize("face", ["ogc", "stac"])
def test_every_queryable_finds_the_item_carrying_its_value(geofed: Any, face: str) -> None:
    """Both faces: for each advertised queryable, a filter on the value an item carries finds that item."""
    narrow = "facility_id = 'lbc-sefwi-01'"  # pushed down: keeps every query small
    if face == "ogc":
        doc = geofed.get("/collections/epoch-plots/queryables", params={"f": "json"}).json()
        items = geofed.get(ITEMS, params={"f": "json", "filter": narrow, "limit": 10}).json()["features"]
    else:
        doc = geofed.get("/stac/collections/epoch-plots/queryables").json()
        items = geofed.get("/stac/search", params={"collections": "epoch-plots", "filter": narrow,
                                                    "limit": 10}).json()["features"]
    assert len(items) == 10
    queryables = {k: v for k, v in doc["properties"].items() if k != "geometry"}
    assert {"facility_id", "monitoring_start", "area"} <= set(queryables)
    if face == "stac":
        assert {"start_datetime", "end_datetime", "datetime"} <= set(queryables)
        assert "thumbnail_url" not in queryables  # an asset on items, not a property
    for name, schema in queryables.items():
        carried = [i for i in items if name in i["properties"] or name in ("id", "collection")]
        assert carried, f"{face}: no item carries the queryable {name}"
        item = next((i for i in carried if i["properties"].get(name) is not None), carried[0])
        value = item.get(name) if name in ("id", "collection") else item["properties"].get(name)
        assert type_fits(schema, value), f"{face}: {name} is {value!r}, advertised as {schema}"
        condition = f"{narrow} AND {cql2_condition(name, schema, value)}"
        if face == "ogc" and schema.get("type") == "number":  # the query-string form of a numeric equality
            response = geofed.get(ITEMS, params={"f": "json", name: value, "filter": narrow, "limit": 10})
        elif face == "ogc":
            response = geofed.get(ITEMS, params={"f": "json", "filter": condition, "limit": 10})
        else:
            response = geofed.get("/stac/search", params={"collections": "epoch-plots", "filter": condition,
                                                          "limit": 10})
        assert response.status_code == 200, f"{face} {condition}: {response.text}"
        found = [f["id"] for f in response.json()["features"]]
        assert item["id"] in found, f"{face}: {condition} did not find {item['id']}"


# ----------------------------------------------------------------- broken streams and upstream errors
def test_stream_cut_mid_line_is_502_not_a_short_page(geofed: Any, sims: Any) -> None:
    sims.faults("epoch", truncate_bytes=20_000, path=UPSTREAM)
    response = geofed.get(ITEMS, params={"f": "json", "facility_id": "lbc-sefwi-01", "limit": 100})
    assert response.status_code == 502
    assert "Epoch stream ended early" in response.text and "features" not in response.json()
    # a count with a condition checked here reads the stream (a bare count is Epoch's one-line aggregate)
    hits = geofed.get(ITEMS, params={"f": "json", "facility_id": "lbc-sefwi-01", "resulttype": "hits",
                                     "filter": "area > 1"})
    assert hits.status_code == 502


def test_stream_closed_on_a_line_boundary_is_502(geofed: Any, sims: Any) -> None:
    filters = {"collection_id": "soy-mt-2023", "facility_id": "trader-sorriso"}
    body = raw_upstream(sims, **filters, limit="40")
    boundary = sum(len(line) + 1 for line in body.split(b"\n")[:20])  # the end of the 20th line
    sims.faults("epoch", truncate_bytes=boundary, path=UPSTREAM)
    # the simulator closes the connection without the final chunk: a direct read fails too
    with pytest.raises(httpx.RemoteProtocolError):
        raw_upstream(sims, **filters, limit="40")
    small = geofed.get(ITEMS, params={"f": "json", **filters, "limit": 5, "datetime": "2017-01-01T00:00:00Z/.."})
    assert small.status_code == 200 and small.json()["numberReturned"] == 5  # read before the break: complete
    cut = geofed.get(ITEMS, params={"f": "json", **filters, "limit": 30, "datetime": "2016-01-01T00:00:00Z/.."})
    assert cut.status_code == 502 and "Epoch stream ended early" in cut.text


def test_upstream_unavailable_is_503_naming_epoch(geofed: Any, sims: Any) -> None:
    sims.faults("epoch", status=503, path=UPSTREAM)  # unavailable on every attempt (one 503 is retried)
    response = geofed.get(ITEMS, params={"f": "json", "facility_id": "coop-daloa-02", "limit": 3})
    assert response.status_code == 503 and "Epoch" in response.text
    assert len(sims.log("epoch", UPSTREAM)) > 1  # the stream is opened through the retrying send path


def test_refused_token_is_502_and_never_shown(start_geofed: Any, sims: Any) -> None:
    server = start_geofed(GEOFED_EPOCH_TOKEN="not-the-epoch-token-s3cr3t")
    response = server.get(ITEMS, params={"f": "json", "limit": 2})
    assert response.status_code == 502 and "Epoch" in response.text
    assert "s3cr3t" not in response.text and "s3cr3t" not in server.log_text()


# ----------------------------------------------------------------- the aggregate process
def test_process_description_is_complete(geofed: Any) -> None:
    process = Processes(geofed.url).process("epoch-aggregate-emissions")
    assert set(process["inputs"]) == {"collection", "monitoring_start", "monitoring_end", "filters"}
    assert all("schema" in spec for spec in process["inputs"].values())
    assert process["inputs"]["collection"]["minOccurs"] == 1
    assert process["example"]["inputs"]["collection"]


def test_aggregate_equals_sums_of_the_simulator_plots(geofed: Any, sims: Any) -> None:
    window = {"monitoring_start": "2020-06-01", "monitoring_end": "2023-12-31"}
    plots = [p["properties"] for p in upstream(sims, filename="cocoa-civ-2024", facility_id="coop-daloa-02",
                                               **window)]
    assert len(plots) > 500
    response = geofed.post(EXECUTE, json={"inputs": {"collection": "cocoa-civ-2024", **window,
                                                     "filters": {"facility_id": "coop-daloa-02"}}})
    assert response.status_code == 200, response.text
    feature = response.json()
    assert feature["type"] == "Feature" and feature["id"] and feature["geometry"]["type"] == "Polygon"
    got = feature["properties"]
    area = sum(p["area"] for p in plots)
    assert got["aggregate_plot_count"] == len(plots)
    assert got["aggregate_area"] == pytest.approx(area)
    for name in ("luc", "biogenic", "soc", "removal"):
        assert got[f"{name}_tco2eyear"] == pytest.approx(sum(p[f"{name}_tco2eyear"] for p in plots))
        assert got[f"{name}_tco2ehayear"] == pytest.approx(
            sum(p[f"{name}_tco2ehayear"] * p["area"] for p in plots) / area)
    for name in ("luc", "biogenic", "removal"):
        assert got[f"{name}_uncertainty_sd"] == pytest.approx(sum(p[f"{name}_uncertainty_sd"] for p in plots))
    for name in ("annual_agb", "annual_bgb", "annual_soc"):
        assert isinstance(got[name], dict)
        for year in ("mean", "2021", "2022"):
            having = [p for p in plots if year in p[name]]
            expected = sum(p[name][year] * p["area"] for p in having) / sum(p["area"] for p in having)
            assert got[name][year] == pytest.approx(expected)
    assert got["monitoring_start"] == min(p["monitoring_start"] for p in plots)[:10]
    assert got["monitoring_end"] == max(p["monitoring_end"] for p in plots)[:10]
    assert got["ingestion_date"] == max(p["ingestion_date"] for p in plots)


@pytest.mark.parametrize(("inputs", "status", "parameter"), [
    ({"collection": "cocoa-civ-2024", "monitoring_start": "2020/01/01"}, 400, "monitoring_start"),
    ({"collection": "cocoa-civ-2024", "monitoring_end": "2024-13-45"}, 400, "monitoring_end"),
    ({"monitoring_start": "2020-01-01"}, 400, "collection"),
    ({"collection": "cocoa-civ-2024", "filters": {"limit": "5"}}, 400, "filters.limit"),
    ({"collection": "no-such-collection"}, 404, "collection"),
])
def test_aggregate_bad_input(geofed: Any, inputs: dict[str, Any], status: int, parameter: str) -> None:
    response = geofed.post(EXECUTE, json={"inputs": inputs})
    assert response.status_code == status, response.text
    assert parameter.split(".")[-1] in response.text


def test_aggregate_over_a_truncated_stream_is_502(geofed: Any, sims: Any) -> None:
    sims.faults("epoch", truncate_bytes=100, path=UPSTREAM)
    response = geofed.post(EXECUTE, json={"inputs": {"collection": "soy-mt-2023"}})
    assert response.status_code == 502 and "Epoch stream ended early" in response.text


def test_stac_collection_shows_the_period_epoch_reports(geofed: Any, sims: Any) -> None:
    """Epoch documents no period: the STAC collection's temporal extent is what Epoch's aggregate says."""
    plots = [json.loads(line) for line in raw_upstream(sims, limit="1000000").splitlines() if line.strip()]
    first = min(p["properties"]["monitoring_start"] for p in plots if p["properties"].get("monitoring_start"))
    last = max(p["properties"]["monitoring_end"] for p in plots if p["properties"].get("monitoring_end"))
    interval = geofed.get("/stac/collections/epoch-plots").json()["extent"]["temporal"]["interval"][0]
    assert [v[:10] if v else v for v in interval] == [first[:10], last[:10]]
