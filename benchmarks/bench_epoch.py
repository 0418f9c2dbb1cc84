"""Epoch streaming figures: a 100 000-plot NDJSON stream turned into pages by a real geofed server.

(a) time to the first page through geofed vs the time the upstream needs to send its whole stream (goal: the
    first page is answered long before a full stream could have been read);
(b) paging through every plot (pages of 100, then of 1000: BENCH_EPOCH_PAGES) over one parked, resumed stream,
    and a count (`resulttype=hits`) that reads the whole stream at once;
(c) the server's peak RSS across all of it (goal: ≤ 150 MB). The stream itself costs a few MB; 1000-feature
    pages cost more: each page's Python objects, kept afterwards by glibc's per-thread arenas of the 64 worker
    threads (measured: with GEOFED_THREADS=2 repeated walks plateau near 170 MB; with 64 threads they pass 240 MB).
Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import httpx

from benchmarks.harness import geofed_process, peak_rss_mb, ratio, simulators_process

PLOTS = int(os.environ.get("BENCH_EPOCH_PLOTS", "100000"))
PAGES = [int(p) for p in os.environ.get("BENCH_EPOCH_PAGES", "100,1000").split(",")]
ITEMS = "/collections/epoch-plots/items"


def full_upstream_stream(env: dict[str, str]) -> tuple[float, int, int]:
    """Seconds, lines and bytes of the whole upstream stream read directly (no geofed)."""
    url = env["GEOFED_EPOCH_URL"] + "/fetch_biomass_emissions"
    headers = {"Authorization": f"Bearer {env['GEOFED_EPOCH_TOKEN']}"}
    started = time.perf_counter()
    lines = size = 0
    with httpx.stream("GET", url, params={"limit": str(PLOTS)}, headers=headers, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    return time.perf_counter() - started, lines, size


def walk(client: httpx.Client, url: str, size: int) -> tuple[float, int, int, float]:
    """Pages through every plot with `offset`/`limit` (one query: its upstream stream is parked and resumed)."""
    started = time.perf_counter()
    seen: set[str] = set()
    offset = pages = 0
    slowest = 0.0
    while True:
        t0 = time.perf_counter()
        page = client.get(f"{url}{ITEMS}", params={"f": "json", "limit": str(size), "offset": str(offset)})
        slowest = max(slowest, time.perf_counter() - t0)
        page.raise_for_status()
        features = page.json()["features"]
        seen.update(f["id"] for f in features)
        pages += 1
        offset += len(features)
        if len(features) < size:
            return time.perf_counter() - started, pages, len(seen), slowest


def main() -> None:
    print(f"Epoch: {PLOTS} plots streamed as NDJSON, pages of {PAGES}")
    with simulators_process({"SIM_EPOCH_PLOTS": str(PLOTS)}) as env, geofed_process(env) as geofed:
        client = httpx.Client(timeout=600)
        client.get(f"{env['GEOFED_EPOCH_URL']}/fetch_biomass_emissions", params={"limit": "1"},
                   headers={"Authorization": f"Bearer {env['GEOFED_EPOCH_TOKEN']}"})  # builds the sim's table
        baseline = peak_rss_mb(geofed.pid)
        stream_s, lines, size = full_upstream_stream(env)
        print(f"    upstream, whole stream read directly:   {stream_s:8.2f} s   {lines} lines, {size / 1e6:.0f} MB")

        started = time.perf_counter()
        first = client.get(f"{geofed.url}{ITEMS}", params={"f": "json", "limit": "100"})
        first_s = time.perf_counter() - started
        print(f"(a) first page (100 plots) through geofed: {first_s:8.2f} s   HTTP {first.status_code}   "
              f"= {ratio(first_s, stream_s)} of the whole stream's time")
        warm = peak_rss_mb(geofed.pid)  # imports done, one query's stream parked

        for size in PAGES:  # small pages first: the peak RSS is read after each walk
            seconds, pages, distinct, slowest = walk(client, geofed.url, size)
            print(f"(b) every plot in {pages} pages of {size}:{'':<{7 - len(str(size))}} {seconds:8.2f} s   "
                  f"{distinct} distinct ids, slowest page {slowest:.2f} s, server peak RSS now "
                  f"{peak_rss_mb(geofed.pid):.0f} MB")

        started = time.perf_counter()
        hits = client.get(f"{geofed.url}{ITEMS}", params={"f": "json", "resulttype": "hits"}).json()
        print(f"    count (resulttype=hits, plots_only):    {time.perf_counter() - started:8.2f} s   "
              f"numberMatched {hits.get('numberMatched')}")

        peak = peak_rss_mb(geofed.pid)
        print(f"(c) server peak RSS: {peak:.0f} MB (goal <= 150 MB); after startup {baseline:.0f} MB, after the "
              f"first page {warm:.0f} MB: paging and counting {PLOTS} plots added {peak - warm:.0f} MB")
        print(f"    first page / whole upstream stream: {ratio(first_s, stream_s)}")


if __name__ == "__main__":
    main()
