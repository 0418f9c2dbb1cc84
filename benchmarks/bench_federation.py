"""Federated STAC search: parallel fan-out and pystac-client throughput.

1. Every simulator answers after an injected latency L (`latency_ms` fault). One federated page over five
   lanes — three Sentinel Hub collections (read completely and sorted here: they cannot sort), CarbonMapper
   plumes (sorted upstream on datetime: merged lazily) and one CarbonMapper STAC collection (read completely)
   — is timed: wall ÷ L shows the fan-out (goal ≤ 1.10; lanes queried one after another would be ~5).
   The window is narrow enough for each lane's page to be one upstream call; the simulators' request logs
   say how many calls each made, so a figure that rests on more calls shows it.
2. items/s of a 1 000-item pystac-client iteration over the same five collections (no injected latency).
Figures are printed, never asserted.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx
from pystac_client import Client

from benchmarks.harness import geofed_process, simulators_process

LATENCY_MS = 400
COLLECTIONS = ["sentinelhub:sentinel-2-l2a", "sentinelhub:sentinel-2-l1c", "sentinelhub:sentinel-1-grd",
               "carbonmapper-plumes"]
WARMUP_WINDOW = "2024-06-01T00:00:00Z/2024-06-03T00:00:00Z"  # tokens, connections, conformance
# Queries no earlier request made (nothing cached); the median of the runs is the figure.
TIMED_WINDOWS = ["2024-06-05T00:00:00Z/2024-06-07T00:00:00Z", "2024-06-09T00:00:00Z/2024-06-11T00:00:00Z",
                 "2024-06-13T00:00:00Z/2024-06-15T00:00:00Z", "2024-06-17T00:00:00Z/2024-06-19T00:00:00Z",
                 "2024-06-21T00:00:00Z/2024-06-23T00:00:00Z"]
ITERATION_WINDOW = "2024-01-01T00:00:00Z/2024-12-31T23:59:59Z"
UPSTREAMS = ("sentinelhub", "carbonmapper")
CALL_PATHS = {"sentinelhub": "/api/v1/catalog/1.0.0/search", "carbonmapper": "/api/v1/"}


def _sim(env: dict[str, str], name: str) -> str:
    return env[f"GEOFED_{name.upper()}_URL"]


def _stac_collection(url: str) -> str:
    """The first CarbonMapper STAC collection the server lists (`carbonmapper:<native id>`)."""
    body = httpx.get(f"{url}/stac/collections", params={"limit": 1000}, timeout=300).json()
    return next(c["id"] for c in body["collections"] if c["id"].startswith("carbonmapper:"))


def _calls(env: dict[str, str]) -> dict[str, int]:
    out = {}
    for name in UPSTREAMS:
        log = httpx.get(f"{_sim(env, name)}/_sim/log", timeout=30).json()
        out[name] = sum(1 for e in log if CALL_PATHS[name] in e["path"] and "token" not in e["path"])
    return out


def _clear(env: dict[str, str]) -> None:
    for name in UPSTREAMS:
        httpx.delete(f"{_sim(env, name)}/_sim/faults", timeout=30).raise_for_status()
        httpx.delete(f"{_sim(env, name)}/_sim/log", timeout=30).raise_for_status()


def _direct_calls(env: dict[str, str], collections: list[str], window: str) -> list[tuple[str, Any]]:
    """The upstream request each lane makes for this page, to time the members without geofed in between."""
    creds = {"grant_type": "client_credentials", "client_id": env["GEOFED_SENTINELHUB_CLIENT_ID"],
             "client_secret": env["GEOFED_SENTINELHUB_CLIENT_SECRET"]}
    token = httpx.post(env["GEOFED_SENTINELHUB_TOKEN_URL"], data=creds, timeout=30).json()["access_token"]
    sh, cm = _sim(env, "sentinelhub"), _sim(env, "carbonmapper")
    calls: list[tuple[str, Any]] = []
    for cid in collections:
        if cid.startswith("sentinelhub:"):
            calls.append(("POST", (f"{sh}/api/v1/catalog/1.0.0/search", {"headers": {
                "Authorization": f"Bearer {token}"}, "json": {"collections": [cid.split(":", 1)[1]],
                                                              "datetime": window, "limit": 100}})))
        elif cid.startswith("carbonmapper:"):
            calls.append(("POST", (f"{cm}/api/v1/stac/search", {"json": {
                "collections": [cid.split(":", 1)[1]], "datetime": window, "limit": 100}})))
        else:
            calls.append(("GET", (f"{cm}/api/v1/catalog/plumes/annotated", {"params": {
                "datetime": window, "sort": "desc", "limit": 11}})))
    return calls


def _slowest_direct(calls: list[tuple[str, Any]]) -> float:
    """Seconds until the slowest of the members' own answers arrives, all sent at once (the ideal fan-out)."""
    from concurrent.futures import ThreadPoolExecutor

    def timed(call: tuple[str, Any]) -> float:
        method, (target, kwargs) = call
        started = time.perf_counter()
        httpx.request(method, target, timeout=300, **kwargs).raise_for_status()
        return time.perf_counter() - started

    with ThreadPoolExecutor(len(calls)) as pool:
        return max(pool.map(timed, calls))


def fan_out(url: str, env: dict[str, str], collections: list[str]) -> None:
    query: dict[str, Any] = {"collections": collections, "limit": 10}
    warm = httpx.post(f"{url}/stac/search", json={**query, "datetime": WARMUP_WINDOW}, timeout=300)
    warm.raise_for_status()
    walls: list[float] = []
    directs: list[float] = []
    for window in TIMED_WINDOWS:
        _clear(env)
        for name in UPSTREAMS:
            httpx.post(f"{_sim(env, name)}/_sim/faults", json={"latency_ms": LATENCY_MS},
                       timeout=30).raise_for_status()
        started = time.perf_counter()
        response = httpx.post(f"{url}/stac/search", json={**query, "datetime": window}, timeout=300)
        walls.append(time.perf_counter() - started)
        calls = _calls(env)
        directs.append(_slowest_direct(_direct_calls(env, collections, window)))  # same latency, no geofed
        _clear(env)
        body = response.json()
        print(f"    {window}: {walls[-1] * 1000:.0f} ms, HTTP {response.status_code}, "
              f"{len(body.get('features', []))} items of {body.get('numberMatched')}, upstream calls {calls}, "
              f"partial: {response.headers.get('X-Geofed-Partial', 'no')}")
    wall = statistics.median(walls)
    print(f"one federated page over {len(collections)} lanes ({', '.join(collections)}), each upstream call "
          f"after {LATENCY_MS} ms: median {wall * 1000:.0f} ms = {wall / (LATENCY_MS / 1000):.2f} x L "
          f"(best {min(walls) / (LATENCY_MS / 1000):.2f}; goal <= 1.10; one lane after another would be "
          f"~{len(collections)}.0)")
    direct = statistics.median(directs)
    print(f"the members' own answers to the same requests, sent at once without geofed: slowest median "
          f"{direct * 1000:.0f} ms (L plus the simulators' own work) -> federation overhead "
          f"{wall / direct:.2f} x the slowest member")


def iteration(url: str, collections: list[str]) -> None:
    client = Client.open(f"{url}/stac", timeout=300)
    started = time.perf_counter()
    search = client.search(collections=collections, datetime=ITERATION_WINDOW, limit=100, max_items=1000)
    count = sum(1 for _ in search.items_as_dicts())
    seconds = time.perf_counter() - started
    print(f"pystac-client iteration over the same lanes, {ITERATION_WINDOW}: {count} items in {seconds:.2f} s "
          f"= {count / seconds:.0f} items/s")


def main() -> None:
    with simulators_process() as env, geofed_process(env) as server:
        collections = [*COLLECTIONS, _stac_collection(server.url)]
        fan_out(server.url, env, collections)
        iteration(server.url, collections)


if __name__ == "__main__":
    main()
