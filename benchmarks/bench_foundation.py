"""Foundation figures, each pair measured side by side in one run.

(a) Warm `/collections/{id}/items?limit=100` throughput: a geofed collection against stock pygeoapi's GeoJSON
    file provider serving the same 10 000 features (goal: geofed ≥ 3×).
(b) Proxy overhead: a geofed page whose simulator answers after 50 ms, against the same upstream page fetched
    directly with httpx (goal: ≤ 1.2×).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from benchmarks.harness import Stats, geofed_process, load, pygeoapi_process, ratio, simulators_process

COLLECTION = os.environ.get("BENCH_COLLECTION", "epoch-plots")
FEATURES = int(os.environ.get("BENCH_FEATURES", "10000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))


def _download(url: str, collection: str, n: int) -> list[dict]:
    features: list[dict] = []
    with httpx.Client(timeout=300) as client:
        while len(features) < n:
            page = client.get(f"{url}/collections/{collection}/items",
                              params={"f": "json", "limit": min(1000, n - len(features)), "offset": len(features)})
            page.raise_for_status()
            batch = page.json()["features"]
            if not batch:
                break
            features.extend(batch)
    return features


def _stock_pygeoapi_config(tmp: Path, geojson: Path) -> tuple[Path, Path]:
    from pygeoapi.openapi import get_oas

    base = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "pygeoapi.yml").read_text())
    base["server"]["manager"] = {"name": "TinyDB", "connection": str(tmp / "jobs.json"), "output_dir": str(tmp)}
    base["resources"] = {
        COLLECTION: {
            "type": "collection",
            "title": "same features, stock GeoJSON provider",
            "description": "benchmark baseline",
            "keywords": ["benchmark"],
            "extents": {"spatial": {"bbox": [-180, -90, 180, 90]}},
            "providers": [{"type": "feature", "name": "GeoJSON", "data": str(geojson), "id_field": "id"}],
        }
    }
    config_path, openapi_path = tmp / "config.yml", tmp / "openapi.yml"
    config_path.write_text(yaml.safe_dump(base))
    openapi_path.write_text(yaml.safe_dump(get_oas(base)))
    return config_path, openapi_path


def bench_items_throughput(env: dict[str, str]) -> None:
    print(f"(a) warm /collections/{COLLECTION}/items?limit=100 — {REQUESTS} requests, {CONCURRENCY} concurrent")
    with geofed_process(env) as geofed, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        features = _download(geofed.url, COLLECTION, FEATURES)
        geojson = tmp / "features.geojson"
        geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        config_path, openapi_path = _stock_pygeoapi_config(tmp, geojson)
        params = {"f": "json", "limit": "100"}
        with pygeoapi_process(config_path, openapi_path) as stock:
            ours = load(f"{geofed.url}/collections/{COLLECTION}/items", REQUESTS, CONCURRENCY, params=params)
            theirs = load(f"{stock.url}/collections/{COLLECTION}/items", REQUESTS, CONCURRENCY, params=params)
        print(f"    features served: {len(features)}")
        print("    " + ours.line("geofed (upstream-backed, warm cache)"))
        print("    " + theirs.line("pygeoapi GeoJSON provider (same features)"))
        print(f"    throughput ratio geofed / pygeoapi: {ratio(ours.rps, theirs.rps)}   (goal >= 3x)")


def _sequential(url: str, pages: list[dict[str, str]]) -> Stats:
    """One request after another, each for a page nobody asked for before (so no cache can answer it)."""
    latencies = []
    with httpx.Client(timeout=120) as client:
        client.get(url, params=pages[0])  # connection warm-up (page 0 is not measured)
        for params in pages[1:]:
            started = time.perf_counter()
            response = client.get(url, params=params)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
    return Stats(len(latencies), sum(latencies), latencies, 0)


def bench_proxy_overhead(env: dict[str, str]) -> None:
    upstream = env["GEOFED_CARBONMAPPER_URL"]
    path = "/api/v1/catalog/plumes/annotated"
    print("(b) proxy overhead, upstream answering after 50 ms — 40 sequential requests, each for a new page")
    httpx.post(f"{upstream}/_sim/faults", json={"latency_ms": 50, "path": "/api/v1/catalog"}).raise_for_status()
    try:
        with geofed_process(env) as geofed:
            # production settings (read cache on); each measured page is new, so every one goes upstream
            offsets = [str(100 * i) for i in range(41)]
            direct = _sequential(f"{upstream}{path}", [{"limit": "100", "offset": o} for o in offsets])
            proxied = _sequential(f"{geofed.url}/collections/carbonmapper-plumes/items",
                                  [{"f": "json", "limit": "100", "offset": o} for o in offsets])
        print("    " + direct.line("upstream page, direct httpx"))
        print("    " + proxied.line("same page through geofed"))
        print(f"    latency ratio geofed / direct (p50): {ratio(proxied.p50, direct.p50)}   (goal <= 1.2x)")
    finally:
        httpx.delete(f"{upstream}/_sim/faults")


def main() -> None:
    with simulators_process() as env:
        bench_items_throughput(env)
        bench_proxy_overhead(env)


if __name__ == "__main__":
    main()
