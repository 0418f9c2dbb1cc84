"""`appeears-extract` end to end: OWSLib → geofed (real server) → the AppEEARS simulator, and back.

The truth (task ids, bundle files and their sha256) is read from the simulator directly; faults (expired
tokens, outages, truncated downloads) are injected through it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import httpx
import pytest
from owslib.ogcapi.processes import Processes

from simulators import DEMO_CREDENTIALS

PROCESS = "appeears-extract"
FINAL = ("successful", "failed", "dismissed")
POLYGON = {"type": "Polygon", "coordinates": [[[-72.3, 42.4], [-72.0, 42.4], [-72.0, 42.7], [-72.3, 42.7],
                                               [-72.3, 42.4]]]}


def area_inputs(name: str, **extra: Any) -> dict[str, Any]:
    return {"task_type": "area", "task_name": name, "start_date": "2020-06-01", "end_date": "2020-06-30",
            "layers": [{"product": "MOD13Q1.061", "layer": "_250m_16_days_NDVI"},
                       {"product": "MOD11A1.061", "layer": "LST_Day_1km"}],
            "geometry": POLYGON, "file_type": "geotiff", "projection": "geographic", **extra}


def point_inputs(name: str, **extra: Any) -> dict[str, Any]:
    return {"task_type": "point", "task_name": name, "start_date": "2019-01-01", "end_date": "2019-01-31",
            "layers": [{"product": "VNP21A1D.002", "layer": "LST_1KM"}],
            "points": [{"latitude": 42.5378, "longitude": -72.1715, "id": "US-Ha1", "category": "DBF"},
                       {"latitude": 44.0646, "longitude": -71.2881, "id": "US-Bar"}], **extra}


@pytest.fixture(autouse=True)
def quick_tasks(sims: Any) -> Any:
    """Simulated tasks take 1.5 s of processing here (tests that need longer set their own)."""
    sims.post("appeears", "/_sim/config", json={"task_seconds": 1.5, "pending_seconds": 0.3}).raise_for_status()
    yield
    sims.http.delete(f"{sims.url('appeears')}/_sim/config").raise_for_status()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------- the simulator's truth
def sim_headers(sims: Any) -> dict[str, str]:
    creds = DEMO_CREDENTIALS["appeears"]
    login = sims.post("appeears", "/login", auth=(creds["username"], creds["password"]))
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['token']}"}


def sim_task(sims: Any, task_name: str) -> dict[str, Any]:
    tasks = sims.get("appeears", "/task", headers=sim_headers(sims)).json()
    found = [t for t in tasks if t["task_name"] == task_name]
    assert len(found) == 1, f"expected one upstream task named {task_name}, found {len(found)}"
    return found[0]


# ----------------------------------------------------------------- geofed as a client sees it
def execute(geofed: Any, inputs: dict[str, Any]) -> str:
    answer = Processes(geofed.url, timeout=60).execute(PROCESS, inputs=inputs, async_=True)
    assert answer["status"] == "accepted", answer
    return str(answer["jobID"])


def wait_for(geofed: Any, job_id: str, timeout: float = 60) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Polls the job status until it is final; returns the final document and every distinct status seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = geofed.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        doc = response.json()
        if not seen or (seen[-1]["status"], seen[-1].get("progress")) != (doc["status"], doc.get("progress")):
            seen.append(doc)
        if doc["status"] in FINAL:
            return doc, seen
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not final after {timeout} s; seen {[s['status'] for s in seen]}")


def check_results(geofed: Any, sims: Any, job_id: str, task_name: str) -> list[dict[str, Any]]:
    """Every result file downloads through geofed with the bytes (sha256, size) the upstream bundle lists."""
    task = sim_task(sims, task_name)
    bundle = sims.get("appeears", f"/bundle/{task['task_id']}").json()
    results = geofed.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200, results.text
    assert "aeq_" not in results.text  # no upstream token (the simulator's tokens start so) ever leaves geofed
    files = results.json()["files"]
    assert sorted(f["file_id"] for f in files) == sorted(f["file_id"] for f in bundle["files"])
    truth = {f["file_id"]: f for f in bundle["files"]}
    for link in files:
        expected = truth[link["file_id"]]
        assert link["href"] == f"{geofed.url}/jobs/{job_id}/results/files/{link['file_id']}"
        assert sims.url("appeears") not in str(link)
        assert link["sha256"] == expected["sha256"] and link["size"] == expected["file_size"]
        assert link["title"] == expected["file_name"].replace("\\", "/")
        download = httpx.get(link["href"], timeout=30)
        assert download.status_code == 200, download.text
        assert hashlib.sha256(download.content).hexdigest() == expected["sha256"]
        assert len(download.content) == expected["file_size"]
        assert download.headers["content-type"].split(";")[0] == link["type"].split(";")[0]
    return files


# ----------------------------------------------------------------- tests
def test_process_is_described_as_async_only(geofed: Any) -> None:
    description = Processes(geofed.url, timeout=30).process(PROCESS)
    assert description["jobControlOptions"] == ["async-execute"]
    assert {"task_type", "layers", "start_date", "end_date", "geometry", "points"} <= set(description["inputs"])


def test_area_task_runs_to_successful_and_every_file_verifies(geofed: Any, sims: Any) -> None:
    # a slower task, so the poller sees it processing
    sims.post("appeears", "/_sim/config", json={"task_seconds": 4}).raise_for_status()
    name = unique("area")
    job_id = execute(geofed, area_inputs(name))
    final, seen = wait_for(geofed, job_id)
    assert final["status"] == "successful", final
    statuses = [s["status"] for s in seen]
    assert statuses == sorted(statuses, key=["accepted", "running", "successful"].index), statuses
    running = [s for s in seen if s["status"] == "running"]
    assert running and all(0 <= s["progress"] <= 100 for s in running), seen
    task = sim_task(sims, name)
    assert task["task_type"] == "area" and task["status"] == "done"
    assert task["params"]["dates"] == [{"startDate": "06-01-2020", "endDate": "06-30-2020"}]
    assert task["params"]["output"] == {"format": {"type": "geotiff"}, "projection": "geographic"}
    files = check_results(geofed, sims, job_id, name)
    assert any(f["type"] == "image/tiff; application=geotiff" for f in files)


def test_point_task_runs_to_successful_and_every_file_verifies(geofed: Any, sims: Any) -> None:
    name = unique("point")
    job_id = execute(geofed, point_inputs(name))
    final, _ = wait_for(geofed, job_id)
    assert final["status"] == "successful", final
    task = sim_task(sims, name)
    assert task["params"]["coordinates"][0] == {"latitude": 42.5378, "longitude": -72.1715, "id": "US-Ha1",
                                                 "category": "DBF"}
    files = check_results(geofed, sims, job_id, name)
    assert any(f["type"] == "text/csv" for f in files)


@pytest.mark.parametrize(
    ("layers", "named"),
    [
        ([{"product": "MOD11A1.061", "layer": "LST_Noon_1km"}], "MOD11A1.061/LST_Noon_1km"),
        ([{"product": "MOD99Z9.061", "layer": "LST_Day_1km"}], "MOD99Z9.061"),
    ],
)
def test_unknown_product_or_layer_is_a_400_naming_it(geofed: Any, sims: Any, layers: list[Any], named: str) -> None:
    response = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": point_inputs("bad", layers=layers)},
                           headers={"Prefer": "respond-async"})
    assert response.status_code == 400, response.text
    assert named in response.text and "layers" in response.text
    assert sims.log("appeears", "/task", method="POST") == []  # nothing was sent upstream


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ({"start_date": "2020-13-01"}, "start_date"),
        ({"start_date": "2020-07-01"}, "start_date"),  # after end_date
        ({"task_type": "swath"}, "task_type"),
        ({"file_type": "jpeg"}, "file_type"),
        ({"projection": "mercator"}, "projection"),
        ({"geometry": {"type": "Point", "coordinates": [1, 2]}}, "geometry"),
    ],
)
def test_bad_inputs_are_400_naming_the_input(geofed: Any, sims: Any, change: dict[str, Any], parameter: str) -> None:
    response = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": area_inputs("bad", **change)},
                           headers={"Prefer": "respond-async"})
    assert response.status_code == 400, response.text
    assert parameter in response.json()["description"]
    assert sims.log("appeears", "/task", method="POST") == []


def test_sync_execution_is_refused_with_a_clear_400(geofed: Any, sims: Any) -> None:
    response = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": point_inputs(unique("sync"))},
                           headers={"Prefer": "wait"})
    assert response.status_code == 400, response.text
    assert "async" in response.text
    assert sims.log("appeears", "/task", method="POST") == []


def test_token_expiry_during_polling_logs_in_again_transparently(geofed: Any, sims: Any) -> None:
    name = unique("expiry")
    job_id = execute(geofed, point_inputs(name))
    logins_before = len(sims.log("appeears", "/login"))
    assert sims.expire_tokens("appeears") >= 1
    final, _ = wait_for(geofed, job_id)
    assert final["status"] == "successful", final
    refused = [e for e in sims.log("appeears") if e["status"] == 403]
    assert refused, "geofed never met the expired token"
    assert len(sims.log("appeears", "/login")) == logins_before + 1  # one re-login, not one per call
    check_results(geofed, sims, job_id, name)
    log = geofed.log_text()
    assert DEMO_CREDENTIALS["appeears"]["password"] not in log and "aeq_" not in log


def test_dismiss_deletes_the_upstream_task(geofed: Any, sims: Any) -> None:
    sims.post("appeears", "/_sim/config", json={"task_seconds": 60}).raise_for_status()
    name = unique("dismiss")
    job_id = execute(geofed, area_inputs(name))
    task_id = sim_task(sims, name)["task_id"]
    response = geofed.delete(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dismissed"
    deletes = sims.log("appeears", f"/task/{task_id}", method="DELETE")
    assert [e["status"] for e in deletes] == [204]
    gone = sims.get("appeears", f"/task/{task_id}", headers=sim_headers(sims))
    assert gone.status_code == 404


def test_failed_upstream_task_fails_the_job_with_its_message(geofed: Any, sims: Any) -> None:
    # MOD11A1.061 starts in 2000: the simulated extraction finds no data and ends in `error`
    name = unique("nodata")
    job_id = execute(geofed, point_inputs(name, start_date="1995-01-01", end_date="1995-01-31",
                                          layers=[{"product": "MOD11A1.061", "layer": "LST_Day_1km"}]))
    final, _ = wait_for(geofed, job_id)
    assert final["status"] == "failed", final
    upstream_error = sim_task(sims, name)["error"]
    assert upstream_error and upstream_error in final["message"]
    assert geofed.get(f"/jobs/{job_id}/results").status_code >= 400


def test_upstream_outage_at_submit_is_a_503_naming_appeears(geofed: Any, sims: Any) -> None:
    sims.faults("appeears", status=503, path="/task")
    response = geofed.post(f"/processes/{PROCESS}/execution", json={"inputs": point_inputs(unique("down"))},
                           headers={"Prefer": "respond-async"})
    assert response.status_code == 503, response.text
    assert "AppEEARS" in response.text and "Traceback" not in response.text


def test_truncated_download_is_not_passed_off_as_complete(geofed: Any, sims: Any) -> None:
    name = unique("truncated")
    job_id = execute(geofed, area_inputs(name))
    assert wait_for(geofed, job_id)[0]["status"] == "successful"
    files = geofed.get(f"/jobs/{job_id}/results").json()["files"]
    big = max(files, key=lambda f: f["size"])
    sims.faults("appeears", truncate_bytes=big["size"] // 2, path="/bundle/")
    with pytest.raises(httpx.HTTPError):  # the body breaks off: never a short 200 that looks complete
        response = httpx.get(big["href"], timeout=30)
        response.raise_for_status()
        assert hashlib.sha256(response.content).hexdigest() == big["sha256"]


def test_downloads_follow_a_redirect_to_storage(geofed: Any, sims: Any) -> None:
    name = unique("redirect")
    job_id = execute(geofed, point_inputs(name))
    assert wait_for(geofed, job_id)[0]["status"] == "successful"
    sims.post("appeears", "/_sim/config", json={"download_redirect": True}).raise_for_status()
    check_results(geofed, sims, job_id, name)
    hops = [e["status"] for e in sims.log("appeears", "/bundle/") if e["path"].count("/") == 3]
    assert 302 in hops and 200 in hops


def test_shutdown_logs_out(start_geofed: Any, sims: Any) -> None:
    server = start_geofed()
    job_id = execute(server, point_inputs(unique("logout")))  # logs in
    assert server.get(f"/jobs/{job_id}").status_code == 200
    assert sims.log("appeears", "/logout") == []
    server.stop()
    assert [e["status"] for e in sims.log("appeears", "/logout", method="POST")] == [204]
