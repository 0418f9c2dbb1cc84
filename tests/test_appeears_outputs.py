"""AppEEARS against its doc (issue 14) and as a new user meets it (issue 19): the submit answer the doc shows,
layers the catalog marks unavailable, AppEEARS' own layer names, result files that are real files of their type
for the dates asked, and a process description whose example runs as published."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_appeears_jobs import (  # noqa: F401 - quick_tasks: the module's simulated tasks are quick too
    PROCESS,
    area_inputs,
    check_results,
    execute,
    point_inputs,
    quick_tasks,
    sim_headers,
    sim_task,
    unique,
    wait_for,
)

ASYNC = {"Prefer": "respond-async"}


def sim_config(sims: Any, **config: Any) -> None:
    sims.post("appeears", "/_sim/config", json=config).raise_for_status()


# ----------------------------------------------------------------- the submit answer (issue 14)
def test_submit_answered_with_location_only_is_read(geofed: Any, sims: Any) -> None:
    name = unique("location")
    job_id = execute(geofed, point_inputs(name))  # the simulator answers as the doc's sample: Location, no body
    (submit,) = sims.log("appeears", "/task", method="POST")
    assert submit["status"] == 202
    final, _ = wait_for(geofed, job_id)
    assert final["status"] == "successful", final
    lookups = [e for e in sims.log("appeears", "/task", method="GET") if e["path"] == "/task"]
    assert not lookups  # the Location sufficed: no lookup by name
    check_results(geofed, sims, job_id, name)


def test_submit_answered_without_the_task_id_finds_the_task_by_name(geofed: Any, sims: Any) -> None:
    sim_config(sims, submit_answer="none")  # 202, but neither Location nor a body: the task exists upstream
    name = unique("noid")
    job_id = execute(geofed, point_inputs(name))
    task = sim_task(sims, name)  # exactly one task of that name upstream: nothing submitted twice
    final, _ = wait_for(geofed, job_id)
    assert final["status"] == "successful", final
    check_results(geofed, sims, job_id, name)  # the job follows the task it created: no orphan
    assert geofed.delete(f"/jobs/{job_id}").status_code == 200
    assert [e["status"] for e in sims.log("appeears", f"/task/{task['task_id']}", method="DELETE")] == [204]


def test_submit_answered_with_a_json_body_only_is_read(geofed: Any, sims: Any) -> None:
    sim_config(sims, submit_answer="json")
    name = unique("json")
    final, _ = wait_for(geofed, execute(geofed, point_inputs(name)))
    assert final["status"] == "successful", final


# ----------------------------------------------------------------- catalog values (issues 14 and 19)
def test_simulator_refuses_a_layer_its_listing_marks_unavailable(sims: Any) -> None:
    sim_config(sims, unavailable_layers=["MOD11A1.061/LST_Night_1km"])
    layers = sims.get("appeears", "/product/MOD11A1.061").json()
    assert layers["LST_Night_1km"]["Available"] is False and layers["LST_Day_1km"]["Available"] is True
    body = {"task_type": "point", "task_name": "off", "params": {
        "dates": [{"startDate": "01-01-2020", "endDate": "01-02-2020"}],
        "layers": [{"product": "MOD11A1.061", "layer": "LST_Night_1km"}],
        "coordinates": [{"latitude": 42.0, "longitude": -72.0}]}}
    refused = sims.post("appeears", "/task", json=body, headers=sim_headers(sims))
    assert refused.status_code == 400 and "LST_Night_1km" in refused.json()["message"]


def test_unavailable_layer_is_a_400_naming_it(start_geofed: Any, sims: Any) -> None:
    server = start_geofed(GEOFED_CACHE_TTL="0")  # reads the catalog as it is now
    sim_config(sims, unavailable_layers=["MOD11A1.061/LST_Night_1km"])
    layers = [{"product": "MOD11A1.061", "layer": "LST_Night_1km"}, {"product": "MOD11A1.061", "layer": "QC_Day"}]
    response = server.post(f"/processes/{PROCESS}/execution", json={"inputs": point_inputs("off", layers=layers)},
                           headers=ASYNC)
    assert response.status_code == 400, response.text
    detail = response.json()["description"]
    assert "MOD11A1.061/LST_Night_1km" in detail and "unavailable" in detail and "QC_Day" not in detail
    assert "/stac/collections/appeears:MOD11A1.061" in detail
    assert sims.log("appeears", "/task", method="POST") == []
    summaries = server.get("/stac/collections/appeears:MOD11A1.061").json()["summaries"]["appeears:layers"]
    assert "LST_Night_1km" not in summaries and "LST_Day_1km" in summaries


def test_unknown_layer_error_says_where_the_valid_names_are(geofed: Any, sims: Any) -> None:
    layers = [{"product": "MOD13Q1.061", "layer": "250m_16_days_NDVI"}]  # without AppEEARS' leading underscore
    response = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": point_inputs("x", layers=layers)},
                           headers=ASYNC)
    assert response.status_code == 400, response.text
    assert "/stac/collections/appeears:MOD13Q1.061" in response.json()["description"]
    listed = geofed.get("/stac/collections/appeears:MOD13Q1.061").json()["summaries"]["appeears:layers"]
    assert "_250m_16_days_NDVI" in listed  # the name AppEEARS uses


# ----------------------------------------------------------------- result files (issue 19 §5)
def files_of(geofed: Any, job_id: str) -> list[tuple[str, bytes]]:
    links = geofed.get(f"/jobs/{job_id}/results").json()["files"]
    return [(link["title"], httpx.get(link["href"], timeout=30).content) for link in links]


def test_daily_area_task_gives_geotiffs_gdal_opens_for_the_days_asked_only(geofed: Any, sims: Any,
                                                                           tmp_path: Path) -> None:
    if shutil.which("gdalinfo") is None:
        pytest.skip("REQUIRES-TOOL: gdalinfo (GDAL) is not installed")
    layers = [{"product": "MOD11A1.061", "layer": "LST_Day_1km"}]
    job_id = execute(geofed, area_inputs(unique("daily"), start_date="2020-06-01", end_date="2020-06-05",
                                         layers=layers))
    assert wait_for(geofed, job_id)[0]["status"] == "successful"
    tiffs = [(title, content) for title, content in files_of(geofed, job_id) if title.endswith(".tif")]
    days = sorted(re.search(r"_doy(\d{7})_", title).group(1) for title, _ in tiffs)  # type: ignore[union-attr]
    assert days == ["2020153", "2020154", "2020155", "2020156", "2020157"]  # 1 to 5 June 2020, no other day
    for title, content in tiffs:
        path = tmp_path / title.rsplit("/", 1)[-1]
        path.write_bytes(content)
        info = subprocess.run(["gdalinfo", str(path)], capture_output=True, text=True, timeout=30)
        assert info.returncode == 0 and "ERROR" not in info.stderr, info.stderr
        assert "Driver: GTiff/GeoTIFF" in info.stdout and 'ID["EPSG",4326]' in info.stdout


def test_point_task_gives_a_csv_that_parses_with_the_days_asked_only(geofed: Any, sims: Any) -> None:
    job_id = execute(geofed, point_inputs(unique("csv"), start_date="2019-01-10", end_date="2019-01-12"))
    assert wait_for(geofed, job_id)[0]["status"] == "successful"
    (content,) = [content for title, content in files_of(geofed, job_id) if title.endswith(".csv")]
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert {r["Date"] for r in rows} == {"2019-01-10", "2019-01-11", "2019-01-12"}
    assert {r["ID"] for r in rows} == {"US-Ha1", "US-Bar"} and len(rows) == 6
    assert all(float(r["VNP21A1D_002_LST_1KM"]) >= 0 for r in rows)


# ----------------------------------------------------------------- the process description (issue 19 §4)
def test_description_describes_everything_without_escaped_placeholders(geofed: Any) -> None:
    response = geofed.get(f"/processes/{PROCESS}", params={"f": "json"})
    assert response.status_code == 200 and "&lt;" not in response.text and "<" not in response.text
    body = response.json()
    for kind in ("inputs", "outputs"):
        assert not [n for n, v in body[kind].items() if not v.get("description")], kind
    assert "/stac/collections/appeears:" in body["inputs"]["layers"]["description"]


def test_published_example_runs_as_is(geofed: Any, sims: Any) -> None:
    example = geofed.get(f"/processes/{PROCESS}", params={"f": "json"}).json()["example"]
    response = geofed.post(f"/processes/{PROCESS}/execution", json=example, headers=ASYNC)
    assert response.status_code == 201, response.text
    final, _ = wait_for(geofed, response.json()["jobID"])
    assert final["status"] == "successful", final
    (content,) = [content for title, content in files_of(geofed, final["jobID"]) if title.endswith(".csv")]
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    start, end = example["inputs"]["start_date"], example["inputs"]["end_date"]
    assert rows and all(start <= r["Date"] <= end for r in rows)
