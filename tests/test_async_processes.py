"""Every advertised process, in every execution mode its description advertises (issue 19 §2).

The processes are those `/processes` lists (the test ids come from the registry, and a test checks that the two
agree, so no process escapes); each is run with the example its own description publishes. Whatever the mode:
never a 5xx, never a job left `accepted`. A mode a process does not advertise is refused with a clear 400 naming
`Prefer`, and leaves no job behind; so does a sync execution refused for its input.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from geofed import registry
from tests.conftest import GeofedServer

pytestmark = pytest.mark.usefixtures("quick_spaceknow_pipelines")

ASYNC = {"Prefer": "respond-async"}
WAIT = {"Prefer": "wait"}
FINAL = ("successful", "failed", "dismissed")


def registered_processes() -> list[str]:
    ids = []
    for upstream in registry.upstreams().values():
        for processor in upstream.processes:
            metadata = getattr(processor, "PROCESS_METADATA", None) or vars(sys.modules[processor.__module__])[
                "PROCESS_METADATA"]
            ids.append(str(metadata["id"]))
    return ids


PROCESSES = registered_processes()


def advertised(geofed: GeofedServer) -> list[str]:
    body = geofed.get("/processes", params={"f": "json", "limit": 1000}).json()
    return [p["id"] for p in body["processes"]]


def jobs_of(geofed: GeofedServer, process_id: str) -> int:
    r = geofed.get("/jobs", params={"processID": process_id, "limit": 1})
    assert r.status_code == 200, r.text
    return int(r.json()["numberMatched"])


def final_status(geofed: GeofedServer, location: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = geofed.get(location.removeprefix(geofed.url), params={"f": "json"}).json()
        if status["status"] in FINAL:
            return status
        assert time.monotonic() < deadline, f"job stuck: {status}"
        time.sleep(0.3)


def test_every_advertised_process_is_covered(geofed: GeofedServer) -> None:
    assert advertised(geofed), "no process advertised"
    assert sorted(advertised(geofed)) == sorted(PROCESSES)


@pytest.mark.parametrize("process_id", PROCESSES)
def test_process_runs_in_every_advertised_mode(geofed: GeofedServer, process_id: str) -> None:
    description = geofed.get(f"/processes/{process_id}", params={"f": "json"})
    assert description.status_code == 200, description.text
    modes = description.json().get("jobControlOptions") or []
    assert modes and set(modes) <= {"sync-execute", "async-execute", "dismiss"}, modes
    example = description.json().get("example")
    if not example or "inputs" not in example:
        pytest.skip(f"process {process_id} publishes no example in its description")
    url = f"/processes/{process_id}/execution"

    if "sync-execute" in modes:
        before = jobs_of(geofed, process_id)
        r = geofed.post(url, json=example, timeout=180)
        assert r.status_code < 500, (process_id, "sync", r.status_code, r.text[:500])
        if r.status_code == 200:
            job_id = r.headers["Location"].rsplit("/", 1)[-1]
            assert geofed.get(f"/jobs/{job_id}").json()["status"] == "successful"
        else:  # refused before anything ran: no job stored (issue 19 §6)
            assert jobs_of(geofed, process_id) == before, (process_id, r.text[:300])
    else:
        before = jobs_of(geofed, process_id)
        r = geofed.post(url, json=example, headers=WAIT)
        assert r.status_code == 400, (process_id, r.text[:300])
        assert r.json().get("parameter") == "Prefer" and "async" in r.json()["detail"]
        assert jobs_of(geofed, process_id) == before

    if "async-execute" in modes:
        r = geofed.post(url, json=example, headers=ASYNC, timeout=180)
        assert r.status_code < 500, (process_id, "async", r.status_code, r.text[:500])
        assert r.status_code == 201, (process_id, r.text[:500])
        assert r.json()["status"] == "accepted"
        done = final_status(geofed, r.headers["Location"])
        assert done["status"] in ("successful", "failed"), done
        assert done["finished"] is not None
        results = geofed.get(f"/jobs/{done['jobID']}/results")
        assert results.status_code < 500 or done["status"] == "failed", results.text[:300]
    else:
        before = jobs_of(geofed, process_id)
        r = geofed.post(url, json=example, headers=ASYNC)
        assert r.status_code == 400, (process_id, r.text[:300])
        body = r.json()
        assert body.get("parameter") == "Prefer" and "synchronously only" in body["detail"], body
        assert jobs_of(geofed, process_id) == before  # no job left `accepted`: none was made


def test_a_sync_only_process_stays_sync_only_after_being_described(geofed: GeofedServer) -> None:
    """pygeoapi 0.24 appends `async-execute` to the class's own options when describing it (see
    geofed.ogc.workarounds): the description and the execution must keep telling the truth."""
    process = "epoch-aggregate-emissions"
    for _ in range(3):
        listed = next(p for p in geofed.get("/processes", params={"f": "json"}).json()["processes"]
                      if p["id"] == process)
        described = geofed.get(f"/processes/{process}", params={"f": "json"}).json()
        assert listed["jobControlOptions"] == described["jobControlOptions"] == ["sync-execute"]
    example = described.get("example") or {"inputs": {}}
    refused = geofed.post(f"/processes/{process}/execution", json=example, headers={"Prefer": "respond-async"})
    assert refused.status_code == 400 and "Prefer" in refused.text
