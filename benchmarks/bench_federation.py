"""Federated STAC search: parallel fan-out and pystac-client throughput.

1. Every simulator answers after an injected latency L (`latency_ms` fault). One federated page over five
   lanes — three Sentinel Hub collections (read completely and sorted here: they cannot sort), CarbonMapper
   plumes (sorted upstream on datetime: merged lazily) and one CarbonMapper STAC collection (read completely)
   — is timed: wall ÷ L shows the fan-out (goal ≤ 1.10; lanes queried one after another would be ~5).
   The window is narrow enough for each lane's page to be one upstream call; the simulators' request logs
   say how many calls each made, so a figure that rests on more calls shows it.
2. items/s of a 1 000-item pystac-client iteration over the same five collections (no injected latency).
3. (issue 13) Every simulator answers after L: the first page (no `sortby`) of one search over every collection
   that has items ÷ the slowest of those collections' own first pages, each searched alone (goal <= 1.2). The
   search is the issue's (no `sortby`, no `datetime`, limit 25); the server runs with GEOFED_CACHE_TTL=0 so that
   every page reaches its upstream (collection lists included: that costs both sides the same round trip).
4. (issue 13) stac-api-validator (tests/test_stac_validation.py's runner and arguments) against a fresh server
   with the defaults of `make serve` (simulators in their own process): its run time, and the server's peak
   RSS (VmHWM) at the end of it (goal <= 300 MB).
Figures are printed, never asserted.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
from pystac_client import Client

from benchmarks.harness import ROOT, geofed_process, peak_rss_mb, simulators_process

LATENCY_MS = 400
PAGE = 25  # the first page of the pystac-client search
RUNS = 3
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


def _page(url: str, collections: list[str]) -> tuple[float, httpx.Response]:
    """The first page of the issue's search (no `sortby`, no `datetime`)."""
    started = time.perf_counter()
    response = httpx.post(f"{url}/stac/search", json={"collections": collections, "limit": PAGE}, timeout=300)
    return time.perf_counter() - started, response


def _upstream_calls(sims: list[str]) -> int:
    return sum(1 for sim in sims for e in httpx.get(f"{sim}/_sim/log", timeout=30).json()
               if "token" not in e["path"] and "oauth" not in e["path"])


def first_page_ratio(url: str, env: dict[str, str]) -> None:
    listed = httpx.get(f"{url}/stac/collections", params={"limit": 1000}, timeout=300).json()["collections"]
    members = [c["id"] for c in listed if _page(url, [c["id"]])[1].json().get("features")]  # with items
    sims = sorted({v for k, v in env.items() if k.endswith("_URL") and "TOKEN" not in k and "AUTH" not in k})
    try:
        for sim in sims:
            httpx.post(f"{sim}/_sim/faults", json={"latency_ms": LATENCY_MS}, timeout=30).raise_for_status()
        own: dict[str, float] = {}
        for cid in members:
            own[cid] = statistics.median(_page(url, [cid])[0] for _ in range(RUNS))
        for sim in sims:
            httpx.delete(f"{sim}/_sim/log", timeout=30).raise_for_status()
        runs = [_page(url, members)]
        calls = _upstream_calls(sims)
        runs += [_page(url, members) for _ in range(RUNS - 1)]
    finally:
        for sim in sims:
            httpx.delete(f"{sim}/_sim/faults", timeout=30).raise_for_status()
    federated = statistics.median(seconds for seconds, _ in runs)
    body = runs[0][1].json()
    slowest = max(own, key=lambda c: own[c])
    ids = [f["id"] + "@" + f.get("collection", "") for f in body.get("features", [])]
    print(f"each collection's own first page ({PAGE} items, every upstream call after {LATENCY_MS} ms, cache "
          f"off), median of {RUNS}: " + ", ".join(f"{c} {own[c] * 1000:.0f} ms" for c in sorted(own)))
    print(f"first federated page over all {len(members)} collections with items: HTTP {runs[0][1].status_code}, "
          f"{len(ids)} items ({len(set(ids))} distinct), {calls} upstream calls, median {federated * 1000:.0f} ms; "
          f"slowest member alone ({slowest}) {own[slowest] * 1000:.0f} ms -> ratio {federated / own[slowest]:.2f} "
          f"(goal <= 1.2)")


def validator(url: str, pid: int) -> None:
    from tests.conftest import SCHEMA_PREFIXES
    from tests.test_stac_validation import VALIDATOR_RUNNER

    prefixes = {prefix: str(folder) for prefix, folder in SCHEMA_PREFIXES.items()}
    args = ["--root-url", f"{url}/stac/", "--collection", "sentinelhub:sentinel-2-l2a",
            "--geometry", '{"type": "Point", "coordinates": [12.0, 46.4]}']
    for cc in ("core", "collections", "features", "item-search", "filter"):
        args += ["--conformance", cc]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", VALIDATOR_RUNNER, json.dumps(prefixes), *args],
                            capture_output=True, text=True, timeout=1800, cwd=ROOT)
    seconds = time.perf_counter() - started
    passed = result.returncode == 0 and "errors: none" in (result.stdout + result.stderr).lower()
    print(f"stac-api-validator (core, collections, features, item-search, filter) against `make serve` defaults: "
          f"{seconds:.1f} s, {'passed' if passed else 'FAILED (exit ' + str(result.returncode) + ')'}; "
          f"server peak RSS {peak_rss_mb(pid):.0f} MB (goal <= 300 MB)")
    if not passed:
        print((result.stdout + result.stderr)[-3000:])


def main() -> None:
    with simulators_process() as env:
        with geofed_process(env) as server:
            collections = [*COLLECTIONS, _stac_collection(server.url)]
            fan_out(server.url, env, collections)
            iteration(server.url, collections)
        with geofed_process({**env, "GEOFED_CACHE_TTL": "0"}) as server:  # every page reaches its upstream
            first_page_ratio(server.url, env)
        with geofed_process(env) as server:
            validator(server.url, server.pid)


if __name__ == "__main__":
    main()
