"""`emissions-inventory` (issue 16) end to end: a real geofed server on the simulators.

Every number of the summary is recomputed here from the simulators' own data, read directly (their APIs, their
`/_sim/` routes, or their seeded catalog), never through geofed. The server is this module's own: failures must
be fast (one attempt, no circuit breaker opening) so that an upstream taken down costs no retries.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry

import geofed.query  # noqa: F401 - before any provider: geofed.collection alone hits a geofed.query cycle
from providers.spaceknow.sources import SceneSource
from simulators import DEMO_CREDENTIALS
from simulators.framework import SimulatorState
from simulators.sentinelhub.data import Catalog as SimulatedSentinelCatalog
from tests.conftest import GeofedServer, Sims, launch_geofed

pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")

EXECUTE = "/processes/emissions-inventory/execution"
UTC = dt.UTC
PERMIAN = [[-103.9, 31.7], [-103.3, 31.7], [-103.3, 32.2], [-103.9, 32.2], [-103.9, 31.7]]
SLOVENIA = [[13.9, 45.9], [14.6, 45.9], [14.6, 46.3], [13.9, 46.3], [13.9, 45.9]]  # Sentinel Hub's tile grid
SOUBRE = [[-6.7, 5.7], [-6.5, 5.7], [-6.5, 5.9], [-6.7, 5.9], [-6.7, 5.7]]  # Epoch cocoa-civ-2024
AREA = {"type": "MultiPolygon", "coordinates": [[PERMIAN], [SLOVENIA], [SOUBRE]]}
PERIOD = "2023-01-01/2024-12-31"
START, END = dt.datetime(2023, 1, 1, tzinfo=UTC), dt.datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
INPUTS = {"geometry": AREA, "datetime": PERIOD, "epoch_collections": ["cocoa-civ-2024"], "cloud_cover_max": 20}
LARGE = {"type": "Polygon", "coordinates": [[[-104.5, 30.8], [-101.5, 30.8], [-101.5, 33.2], [-104.5, 33.2],
                                             [-104.5, 30.8]]]}  # ≈ 75 000 km²: above the synchronous maximum


@pytest.fixture(scope="module")
def server(sims: Sims, geofed_env_vars: dict[str, str]) -> Iterator[GeofedServer]:
    env = {**geofed_env_vars, "GEOFED_HTTP_RETRIES": "1", "GEOFED_BREAKER_FAILURES": "1000"}
    with tempfile.TemporaryDirectory(prefix="geofed-inventory-") as tmp:
        started = launch_geofed(env, Path(tmp))
        yield started
        started.stop()


def execute(server: GeofedServer, inputs: dict[str, Any], **body: Any) -> Any:
    return server.post(EXECUTE, json={"inputs": inputs, **body}, timeout=120)


@pytest.fixture(scope="module")
def answer(server: GeofedServer, sims: Sims, quick_spaceknow_pipelines: None) -> dict[str, Any]:
    sims.clear()
    response = execute(server, INPUTS)
    assert response.status_code == 200, response.text
    return response.json()


# ----------------------------------------------------------------- truth, from the simulators
def _moment(value: str) -> dt.datetime:
    """An RFC 3339 time, or SpaceKnow's `YYYY-MM-DD HH:MM:SS` (UTC)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _inside(geometry: dict[str, Any]) -> bool:
    return shapely.geometry.shape(AREA).intersects(shapely.geometry.shape(geometry))


def truth_plumes(sims: Sims) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for part in AREA["coordinates"]:
        xs, ys = [p[0] for p in part[0]], [p[1] for p in part[0]]
        offset = 0
        while True:
            body = sims.get("carbonmapper", "/api/v1/catalog/plumes/annotated", params=[
                *[("bbox", v) for v in (min(xs), min(ys), max(xs), max(ys))], ("limit", 1000), ("offset", offset)],
            ).json()
            for plume in body["items"]:
                if _inside(plume["geometry_json"]) and START <= _moment(plume["scene_timestamp"]) <= END:
                    found[plume["plume_id"]] = plume
            offset += len(body["items"])
            if offset >= body["total_count"] or not body["items"]:
                break
    return list(found.values())


def truth_sources(sims: Sims) -> list[dict[str, Any]]:
    every = sims.get("carbonmapper", "/api/v1/catalog/sources.geojson").json()["features"]
    return [f["properties"] for f in every if _inside(f["geometry"])]


def truth_plots(sims: Sims, collection: str) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {DEMO_CREDENTIALS['epoch']['token']}"}
    raw = sims.get("epoch", "/fetch_biomass_emissions", params={"filename": collection, "limit": "1000000"},
                   headers=auth, timeout=120)
    raw.raise_for_status()
    plots = [json.loads(line) for line in raw.content.splitlines() if line.strip()]
    return [p["properties"] for p in plots if _inside(p["geometry"])
            and _moment(p["properties"]["monitoring_start"]) <= END
            and _moment(p["properties"]["monitoring_end"]) >= START]


def emissions(plumes: list[dict[str, Any]]) -> dict[str, Any]:
    rated = [p for p in plumes if p.get("emission_auto") is not None]
    total = sum(p["emission_auto"] for p in rated)
    spread = math.sqrt(sum((p.get("emission_uncertainty_auto") or 0.0) ** 2 for p in rated))
    return {"count": len(plumes), "emission_count": len(rated), "sum_kgh": total,
            "mean_kgh": total / len(rated) if rated else None, "sum_uncertainty_kgh": spread,
            "mean_uncertainty_kgh": spread / len(rated) if rated else None}


def assert_close(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) >= set(expected)
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value, rel=1e-9, abs=1e-9) if isinstance(value, float) else value), key


# ----------------------------------------------------------------- tests
def test_every_number_equals_the_simulators_own(answer: dict[str, Any], sims: Sims) -> None:
    summary = answer["summary"]
    assert summary["partial"] is False and summary["failed"] == []
    assert {n: b["status"] for n, b in summary["upstreams"].items()} == {
        "carbonmapper": "ok", "epoch": "ok", "sentinelhub": "ok", "spaceknow": "ok"}

    plumes = truth_plumes(sims)
    assert plumes and summary["plumes"]["count"] == len(plumes)
    by_gas = summary["plumes"]["by_gas"]
    assert set(by_gas) == {p["gas"] for p in plumes}
    for gas, block in by_gas.items():
        mine = [p for p in plumes if p["gas"] == gas]
        assert_close(block, emissions(mine))
        assert set(block["by_sector"]) == {p["sector"] for p in mine}
        for sector, stats in block["by_sector"].items():
            assert_close(stats, emissions([p for p in mine if p["sector"] == sector]))
    ranked = sorted((p for p in plumes if p.get("emission_auto") is not None),
                    key=lambda p: (-p["emission_auto"], p["plume_id"]))[:10]
    largest = summary["plumes"]["largest"]
    assert [p["id"] for p in largest] == [p["plume_id"] for p in ranked]
    assert [p["emission_auto"] for p in largest] == [p["emission_auto"] for p in ranked]
    assert all(p["href"].endswith(f"/collections/carbonmapper-plumes/items/{p['id']}") for p in largest)

    sources = truth_sources(sims)
    assert sources and summary["sources"]["count"] == len(sources)
    listed = {s["id"]: s for s in summary["sources"]["items"]}
    assert set(listed) == {s["source_name"] for s in sources}
    for source in sources:
        mine = listed[source["source_name"]]
        for key in ("persistence", "emission_auto", "plume_count", "gas", "sector"):
            assert mine[key] == source[key], key
        assert mine["href"].endswith(f"/collections/carbonmapper-sources/items/{source['source_name']}")

    plots = truth_plots(sims, "cocoa-civ-2024")
    sums = {name: sum(p[name] or 0.0 for p in plots) for name in
            ("area", "luc_tco2eyear", "biogenic_tco2eyear", "soc_tco2eyear", "removal_tco2eyear")}
    expected = {"count": len(plots), "area_ha": sums.pop("area"), **sums,
                "net_tco2eyear": -sums["luc_tco2eyear"] + sums["biogenic_tco2eyear"] + sums["soc_tco2eyear"]
                - sums["removal_tco2eyear"]}
    assert plots
    assert_close(summary["plots"], expected)
    assert_close(summary["plots"]["collections"]["cocoa-civ-2024"], expected)

    catalog = SimulatedSentinelCatalog(SimulatorState("sentinelhub", seed=42))
    scenes = [r for r in catalog.records["sentinel-2-l2a"]
              if START <= r.when <= END and r.geometry.intersects(shapely.geometry.shape(AREA))]
    clear = [r for r in scenes if r.item["properties"]["eo:cloud_cover"] <= 20]
    assert scenes and summary["sentinelhub"]["count"] == len(scenes)
    assert summary["sentinelhub"]["clear_count"] == len(clear)
    assert summary["sentinelhub"]["clear_dates"] == sorted({r.when.date().isoformat() for r in clear})

    datasets = {(d["provider"], d["dataset"]) for d in SceneSource.collection.options["datasets"]}
    archive = [s for s in sims.get("spaceknow", "/_sim/archive").json()
               if (s["provider"], s["dataset"]) in datasets and START <= _moment(s["datetime"]) <= END
               and _inside(s["footprint"])]
    assert archive and summary["spaceknow"]["count"] == len(archive)
    for key, block in summary["spaceknow"]["by_dataset"].items():
        assert block["count"] == sum(1 for s in archive if f"{s['provider']}/{s['dataset']}" == key), key

    collections = [f["properties"]["collection"] for f in answer["features"]["features"]]
    assert collections.count("carbonmapper-plumes") == len(plumes)
    assert collections.count("carbonmapper-sources") == len(sources)
    assert collections.count("epoch-plots") == len(plots)


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="REQUIRES-TOOL: ogrinfo (gdal-bin)")
def test_geojson_output_opens_with_ogrinfo(server: GeofedServer, tmp_path: Path) -> None:
    response = execute(server, INPUTS, outputs={"features": {}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    path = tmp_path / "inventory.geojson"
    path.write_bytes(response.content)
    count = len(response.json()["features"])
    info = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    assert f"Feature Count: {count}" in info
    assert "collection: String" in info
    plots = subprocess.run(["ogrinfo", "-ro", "-q", "-al", "-where", "collection = 'epoch-plots'", str(path)],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert plots.count("POLYGON") == sum(1 for f in response.json()["features"]
                                         if f["properties"]["collection"] == "epoch-plots") > 0


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_html_report_has_the_map_and_chart_and_renders(server: GeofedServer, tmp_path: Path) -> None:
    response = execute(server, INPUTS, outputs={"report": {}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<svg id="map"' in page and '<svg id="chart"' in page
    assert page.count('class="bar"') >= 1 and "<circle" in page  # bars, and plumes on the map
    assert "<script" not in page and "src=" not in page and "@import" not in page and "url(" not in page
    browser = _chromium()
    if browser is None:
        pytest.skip("REQUIRES-TOOL: chromium (headless) to render the report")
    (tmp_path / "report.html").write_text(page)
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1000,1600", (tmp_path / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 10_000, "chromium produced no screenshot"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nemissions-inventory report screenshot: {shot} ({shot.stat().st_size} bytes)")


def test_one_upstream_down_gives_a_partial_answer_naming_it(server: GeofedServer, sims: Sims) -> None:
    sims.faults("sentinelhub", status=503, path="/api/v1/catalog")
    response = execute(server, {**INPUTS, "epoch_collections": []})
    assert response.status_code == 200, response.text[:2000]
    summary = response.json()["summary"]
    assert summary["partial"] is True and summary["failed"] == ["Sentinel Hub"]
    block = summary["upstreams"]["sentinelhub"]
    assert block["status"] == "failed" and block["sections"]["sentinelhub"]["status_code"] == 503
    assert "sentinelhub" not in summary
    assert summary["plumes"]["count"] > 0 and summary["upstreams"]["carbonmapper"]["status"] == "ok"


def test_every_upstream_down_is_a_502(server: GeofedServer, sims: Sims) -> None:
    for name in ("carbonmapper", "sentinelhub", "spaceknow"):
        sims.faults(name, status=503)
    # a period and gas no earlier test asked for: nothing of it is in geofed's read caches
    response = execute(server, INPUTS | {"epoch_collections": [], "datetime": "2022-01-01/2022-06-30",
                                         "gases": ["CO2"]})
    assert response.status_code == 502, response.text[:2000]
    assert "every upstream" in response.json()["description"]


@pytest.mark.parametrize(("inputs", "name"), [
    ({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}, "geometry"),
    ({"geometry": {"type": "Point", "coordinates": [0, 0]}}, "geometry"),
    ({"geometry": {"type": "Polygon", "coordinates": [[[-20, -20], [20, -20], [20, 20], [-20, 20], [-20, -20]]]}},
     "geometry"),  # ≈ 19 million km²: over the hard maximum
    ({"datetime": "2024-12-31/2023-01-01"}, "datetime"),
    ({"datetime": "2023-01-01/.."}, "datetime"),
    ({"gases": ["N2O"]}, "gases"),
    ({"cloud_cover_max": 120}, "cloud_cover_max"),
])
def test_invalid_inputs_are_a_400_naming_the_input(server: GeofedServer, inputs: dict[str, Any],
                                                   name: str) -> None:
    response = execute(server, {**INPUTS, **inputs})
    assert response.status_code == 400, response.text
    assert f"'{name}'" in response.json()["description"]


def test_a_large_area_runs_as_a_job_to_successful(server: GeofedServer) -> None:
    inputs = {"geometry": LARGE, "datetime": "2024-01-01/2024-12-31", "gases": ["CH4"]}
    refused = execute(server, inputs)
    assert refused.status_code == 400 and "Prefer: respond-async" in refused.json()["description"]
    accepted = server.post(EXECUTE, json={"inputs": inputs}, headers={"Prefer": "respond-async"}, timeout=60)
    assert accepted.status_code == 201, accepted.text
    status_url = accepted.headers["location"]
    deadline, seen = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        status = server.get(status_url.removeprefix(server.url)).json()
        seen.append((status["status"], status.get("progress")))
        if status["status"] not in ("accepted", "running"):
            break
        time.sleep(0.3)
    assert status["status"] == "successful", (status, seen)
    results = server.get(f"{status_url.removeprefix(server.url)}/results").json()
    summary = results["summary"]
    assert summary["area"]["km2"] > 20_000 and summary["plumes"]["count"] > 0 and summary["partial"] is False
    assert set(summary["plumes"]["by_gas"]) == {"CH4"}
    features = server.get(results["features"]["href"].removeprefix(server.url))
    assert features.status_code == 200 and features.headers["content-type"].startswith("application/geo+json")
    assert len(features.json()["features"]) == summary["plumes"]["count"] + summary["sources"]["count"]
    report = server.get(results["report"]["href"].removeprefix(server.url))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert '<svg id="map"' in report.text and '<svg id="chart"' in report.text
    # a browser asking for the results as HTML gets the report
    html = server.get(f"{status_url.removeprefix(server.url)}/results", params={"f": "html"},
                      follow_redirects=True)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert '<svg id="chart"' in html.text
