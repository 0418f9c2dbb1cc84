"""Epoch streaming figures: a 100 000-plot NDJSON stream turned into pages by a real geofed server.

(a) time to the first page through geofed vs the time the upstream needs to send its whole stream (goal: the
    first page is answered long before a full stream could have been read);
(b) paging through every plot (`limit` = BENCH_EPOCH_PAGE) over one parked, resumed stream, and a count
    (`resulttype=hits`) that reads the whole stream at once;
(c) the server's peak RSS across all of it (goal: ≤ 150 MB).
Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import httpx

from benchmarks.harness import geofed_process, peak_rss_mb, ratio, simulators_process

PLOTS = int(os.environ.get("BENCH_EPOCH_PLOTS", "100000"))
PAGE = int(os.environ.get("BENCH_EPOCH_PAGE", "1000"))
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


def main() -> None:
    print(f"Epoch: {PLOTS} plots streamed as NDJSON, pages of {PAGE}")
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

        started = time.perf_counter()
        seen, offset, pages, slowest = set(), 0, 0, 0.0
        while True:
            t0 = time.perf_counter()
            page = client.get(f"{geofed.url}{ITEMS}", params={"f": "json", "limit": str(PAGE), "offset": str(offset)})
            slowest = max(slowest, time.perf_counter() - t0)
            page.raise_for_status()
            features = page.json()["features"]
            seen.update(f["id"] for f in features)
            pages += 1
            offset += len(features)
            if len(features) < PAGE:
                break
        paging_s = time.perf_counter() - started
        print(f"(b) every plot in {pages} pages of {PAGE}:     {paging_s:8.2f} s   {len(seen)} distinct ids, "
              f"slowest page {slowest:.2f} s")

        started = time.perf_counter()
        hits = client.get(f"{geofed.url}{ITEMS}", params={"f": "json", "resulttype": "hits"}).json()
        print(f"    count (resulttype=hits, plots_only):    {time.perf_counter() - started:8.2f} s   "
              f"numberMatched {hits.get('numberMatched')}")

        peak = peak_rss_mb(geofed.pid)
        print(f"(c) server peak RSS: {peak:.0f} MB (goal <= 150 MB); after startup {baseline:.0f} MB, after the "
              f"first page {warm:.0f} MB: streaming and paging {PLOTS} plots added {peak - warm:.0f} MB")
        print(f"    first page / whole upstream stream: {ratio(first_s, stream_s)}")


if __name__ == "__main__":
    main()
