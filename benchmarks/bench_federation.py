"""Federated STAC search: parallel fan-out and pystac-client throughput.

1. Every simulator answers after an injected latency L; one federated page over one collection per member
   is timed: wall ÷ L shows the fan-out (goal ≤ 1.10; members queried one after another would be ~N).
   Members that cannot sort as asked are read completely, so the query is narrowed (datetime) to keep each
   member's read to one upstream call.
2. items/s of a 1 000-item pystac-client iteration (no injected latency).
Figures are printed, never asserted.
"""

from __future__ import annotations

import time

import httpx
from pystac_client import Client

from benchmarks.harness import geofed_process, simulators_process

LATENCY_MS = 400
WINDOW = "2024-06-01T00:00:00Z/2024-06-03T00:00:00Z"
SECOND_WINDOW = "2024-06-05T00:00:00Z/2024-06-07T00:00:00Z"


def _sim_url(env: dict[str, str], name: str) -> str:
    return env[f"GEOFED_{name.upper()}_URL"]


def _collections(url: str) -> dict[str, str]:
    """One searchable collection per upstream (the first listed), upstream name → collection id."""
    body = httpx.get(f"{url}/stac/collections", params={"limit": 10_000}, timeout=300).json()
    chosen: dict[str, str] = {}
    for collection in body["collections"]:
        cid = collection["id"]
        upstream = cid.split(":", 1)[0] if ":" in cid else cid.split("-", 1)[0]
        if upstream != "appeears":
            chosen.setdefault(upstream, cid)
    return chosen


def main() -> None:
    with simulators_process() as env, geofed_process({**env, "GEOFED_CACHE_TTL": "0"}) as server:
        chosen = _collections(server.url)
        print(f"members: {', '.join(f'{k}={v}' for k, v in sorted(chosen.items()))}")
        query = {"collections": list(chosen.values()), "limit": 10}
        for window in (WINDOW,):  # warm-up: tokens, connections
            httpx.post(f"{server.url}/stac/search", json={**query, "datetime": window}, timeout=300)
        for name in {k.split("_")[1].lower() for k in env if k.endswith("_URL") and k.count("_") == 2}:
            httpx.post(f"{_sim_url(env, name)}/_sim/faults", json={"latency_ms": LATENCY_MS}).raise_for_status()
        started = time.perf_counter()
        response = httpx.post(f"{server.url}/stac/search", json={**query, "datetime": SECOND_WINDOW}, timeout=300)
        wall = time.perf_counter() - started
        body = response.json()
        print(f"one federated page over {len(chosen)} members, each after {LATENCY_MS} ms: {wall * 1000:.0f} ms "
              f"= {wall / (LATENCY_MS / 1000):.2f} x L (goal <= 1.10; sequential would be ~{len(chosen)}.0)  "
              f"[HTTP {response.status_code}, {len(body.get('features', []))} items, "
              f"members {body.get('federation:members')}]")
        for name in {k.split("_")[1].lower() for k in env if k.endswith("_URL") and k.count("_") == 2}:
            httpx.delete(f"{_sim_url(env, name)}/_sim/faults")

        client = Client.open(f"{server.url}/stac/", timeout=300)
        sh = [c for c in chosen.values() if c.startswith("sentinelhub:")]
        started = time.perf_counter()
        count = sum(1 for _ in client.search(collections=sh or list(chosen.values()), datetime="2024-01-01/2024-12-31",
                                             limit=100, max_items=1000).items_as_dicts())
        seconds = time.perf_counter() - started
        print(f"pystac-client iteration: {count} items in {seconds:.2f} s = {count / seconds:.0f} items/s")


if __name__ == "__main__":
    main()
