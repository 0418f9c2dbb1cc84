"""An upstream added through the registry alone appears on both faces (issue 12, item 4).

`tests/plugins/` holds a tiny example upstream (`example_upstream`: client, records, sources, features, stac)
and its simulator (`example_simulator`), declared to geofed only through entry points (the
`example_upstream-0.1.dist-info` folder there, found by `importlib.metadata` once the folder is on the path).
Nothing in `geofed/`, `stac_bridge/` or another provider names it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
from pystac_client import Client

from tests.conftest import ROOT

PLUGINS = Path(__file__).resolve().parent / "plugins"
COLLECTION = "example-stations"


def _server(start_geofed: Any) -> Any:
    # the five built-in upstreams on the shared simulators, the example one in demo mode (its own simulator,
    # started by geofed's demo launcher from the `geofed.simulators` entry point)
    path = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)
    return start_geofed(GEOFED_DEMO="1", PYTHONPATH=path)


def test_nothing_outside_the_plugin_names_it() -> None:
    found = subprocess.run(["grep", "-rl", "example_upstream\\|example-stations", "geofed", "stac_bridge",
                            "providers", "simulators"], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == ""


def test_example_upstream_on_both_faces(start_geofed: Any, stac_validate: Any) -> None:
    server = _server(start_geofed)
    collections = server.get("/collections", params={"f": "json"}).json()["collections"]
    assert COLLECTION in [c["id"] for c in collections]
    page = server.get(f"/collections/{COLLECTION}/items", params={"f": "json", "limit": 5}).json()
    assert len(page["features"]) == 5 and page["numberMatched"] == 37

    client = Client.open(f"{server.url}/stac/", timeout=60)
    collection = client.get_collection(COLLECTION)
    assert stac_validate(collection.to_dict()) == []
    assert collection.extent.temporal.intervals[0][0] is not None
    items = list(client.search(collections=[COLLECTION], max_items=40).items_as_dicts())
    assert len(items) == 37 and len({i["id"] for i in items}) == 37
    errors = [e for item in items for e in stac_validate(item)]
    assert errors == []


def test_example_upstream_filters_on_each_face_in_its_own_vocabulary(start_geofed: Any) -> None:
    server = _server(start_geofed)
    since = "TIMESTAMP('2024-05-01T00:00:00Z')"
    ogc = server.get(f"/collections/{COLLECTION}/items",
                     params={"f": "json", "filter": f"network='ICOS' AND measured_at > {since}", "limit": 100}).json()
    stac = httpx.post(f"{server.url}/stac/search", timeout=60, json={
        "collections": [COLLECTION], "limit": 100, "filter-lang": "cql2-text",
        "filter": f"network='ICOS' AND datetime > {since}"}).json()
    ogc_ids = sorted(f["id"] for f in ogc["features"])
    assert ogc_ids and ogc_ids == sorted(f["id"] for f in stac["features"])
    queryables = server.get(f"/stac/collections/{COLLECTION}/queryables").json()["properties"]
    assert "datetime" in queryables and "measured_at" not in queryables
