"""SpaceKnow figures: what the search cache and parallel windows buy, measured side by side in one run.

(a) Paging: the first page of a scenes query (runs the search pipeline: initiate → nextTry polls → retrieve)
    against the following pages (served from geofed's search cache). Goal: later pages ≥ 10× faster.
(b) Windows: a cold query over a 900 km-wide bbox (3 windows, searched in parallel) against a cold query of one
    window. Goal: ≤ 1.5× (sequential windows would be ≈ 3×).
Pipelines take `BENCH_SPACEKNOW_POLLS` polls `BENCH_SPACEKNOW_NEXT_TRY` seconds apart (simulator settings).
"""

from __future__ import annotations

import json
import os
import statistics
import time

import httpx

from benchmarks.harness import geofed_process, ratio, simulators_process

ITEMS = "/collections/spaceknow-scenes/items"
POLLS = int(os.environ.get("BENCH_SPACEKNOW_POLLS", "2"))
NEXT_TRY = int(os.environ.get("BENCH_SPACEKNOW_NEXT_TRY", "1"))
PAGES = int(os.environ.get("BENCH_SPACEKNOW_PAGES", "10"))


def _timed(client: httpx.Client, url: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(url, params={"f": "json", **params})
    response.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    sim_env = {"SIM_SPACEKNOW_CONFIG": json.dumps({"polls": POLLS, "next_try": NEXT_TRY})}
    with simulators_process(sim_env) as env, geofed_process(env) as server, httpx.Client(timeout=300) as client:
        url = f"{server.url}{ITEMS}"
        query = {"bbox": "-104.4,30.9,-101.6,33.1", "provider": "pl", "limit": "5"}
        first = _timed(client, url, {**query, "offset": "0"})
        later = [_timed(client, url, {**query, "offset": str(5 * i)}) for i in range(1, PAGES)]
        warm = statistics.median(later)
        print(f"(a) first page (pipeline)          {first * 1000:9.1f} ms")
        print(f"    later pages (cache), median    {warm * 1000:9.1f} ms   first/later {ratio(first, warm)}")

        one = _timed(client, url, {"bbox": "-104.4,31.0,-101.4,33.0", "provider": "ab", "limit": "100"})
        wide = _timed(client, url, {"bbox": "-109.5,31.0,-100.0,33.0", "provider": "ee", "limit": "100"})
        print(f"(b) one window, cold               {one * 1000:9.1f} ms")
        print(f"    900 km bbox (3 windows), cold  {wide * 1000:9.1f} ms   wide/one {ratio(wide, one)}")


if __name__ == "__main__":
    main()
