"""Alerts: delay from a plume's publication upstream to its delivery, and upstream calls per poll.

A CarbonMapper simulator (in this process) and a geofed server (GEOFED_WATCH_INTERVAL = BENCH_ALERTS_INTERVAL,
default 2 s; Mosquitto at 127.0.0.1:1883) with 100 subscriptions over one area (half MQTT, half webhooks to a
loopback receiver). 50 plumes are published in that area, spread over the poll phase. Printed: the median and
p90 delay per channel (publication → the subscriber has the message) as a multiple of the poll interval
(goal: median ≤ 1.5), deliveries counted (each plume reaches each subscription once), and the upstream calls
per poll (read from the simulator's request log; goal: one per upstream and poll, whatever the subscriptions).
Figures are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from paho.mqtt import client as mqtt

from benchmarks.harness import geofed_process
from simulators import geofed_env
from simulators.server import SimulatorServer

INTERVAL = float(os.environ.get("BENCH_ALERTS_INTERVAL", "2"))
PLUMES = int(os.environ.get("BENCH_ALERTS_PLUMES", "50"))
SUBSCRIPTIONS = int(os.environ.get("BENCH_ALERTS_SUBSCRIPTIONS", "100"))
AREA = [-100.0, 40.0, -99.0, 41.0]
KEY = "bench-alerts"


class Arrivals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, list[tuple[str, float]]] = {"mqtt": [], "webhook": []}  # (plume, arrival)

    def add(self, channel: str, body: bytes) -> None:
        now = time.time()
        plume = json.loads(body)["data"]["id"]
        with self.lock:
            self.at[channel].append((plume, now))


class Receiving(ThreadingHTTPServer):
    request_queue_size = 512  # the default backlog (5) refuses a courier's concurrent connections
    daemon_threads = True


def receiver(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver: the courier reuses connections

        def do_POST(self) -> None:  # noqa: N802
            arrivals.add("webhook", self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = Receiving(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def listener(arrivals: Arrivals) -> mqtt.Client:
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"geofed-bench-{os.getpid()}")
    client.on_connect = lambda c, *_: c.subscribe("subscriptions/#", qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda c, u, m: arrivals.add("mqtt", m.payload)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    ready.wait(10)
    return client


def upstream_calls(sim: str) -> int:
    log = httpx.get(f"{sim}/_sim/log").json()
    return sum(1 for e in log if "/catalog/" in e["path"])


def main() -> None:
    arrivals = Arrivals()
    hooks = receiver(arrivals)
    mq = listener(arrivals)
    sims = SimulatorServer(names=["carbonmapper"]).start()
    sim = sims.base_urls["carbonmapper"]
    env = {**geofed_env(sims.base_urls), "GEOFED_WATCH_INTERVAL": str(INTERVAL), "GEOFED_API_KEYS": KEY,
           "GEOFED_PUBSUB_URL": "mqtt://127.0.0.1:1883", "GEOFED_WEBHOOK_ALLOW": "127.0.0.1"}
    published: dict[str, float] = {}
    try:
        with geofed_process(env) as server:
            auth = {"X-API-Key": KEY}
            while not httpx.get(f"{server.url}/alerts").json()["collections"]["carbonmapper-plumes"]["watermark"]:
                time.sleep(0.2)
            for i in range(SUBSCRIPTIONS):
                delivery = {"type": "mqtt"} if i % 2 == 0 else {
                    "type": "webhook", "url": f"http://127.0.0.1:{hooks.server_address[1]}/hook"}
                r = httpx.post(f"{server.url}/subscriptions", headers=auth, json={"bbox": AREA, "delivery": delivery})
                r.raise_for_status()
            before = httpx.get(f"{server.url}/alerts").json()["collections"]["carbonmapper-plumes"]["polls"]
            httpx.delete(f"{sim}/_sim/log")
            calls0 = upstream_calls(sim)
            spacing = INTERVAL * 0.37  # not a divisor of the interval: plumes land at every phase of the poll
            for i in range(PLUMES):
                started = time.time()
                r = httpx.post(f"{sim}/_sim/plumes", json={"lon": -99.9 + i * 0.015, "lat": 40.5})
                published[r.json()["plume_id"]] = started
                time.sleep(max(0.0, spacing - (time.time() - started)))
            expected = PLUMES * (SUBSCRIPTIONS // 2)
            deadline = time.time() + 20 * INTERVAL + 60
            while time.time() < deadline and min(len(v) for v in arrivals.at.values()) < expected:
                time.sleep(0.2)
            time.sleep(2 * INTERVAL)
            polls = httpx.get(f"{server.url}/alerts").json()["collections"]["carbonmapper-plumes"]["polls"] - before
            calls = upstream_calls(sim) - calls0
    finally:
        sims.stop()
        mq.loop_stop()
        hooks.shutdown()
    print(f"{PLUMES} plumes, {SUBSCRIPTIONS} subscriptions (half MQTT, half webhook), poll interval {INTERVAL:g} s")
    for channel, seen in arrivals.at.items():
        delays = [at - published[p] for p, at in seen if p in published]
        unique = len({(p, round(at, 6)) for p, at in seen})
        if not delays:
            print(f"  {channel}: nothing delivered")
            continue
        q = statistics.quantiles(delays, n=10)
        print(f"  {channel}: {len(delays)} deliveries (expected {PLUMES * (SUBSCRIPTIONS // 2)}, {unique} distinct); "
              f"delay median {statistics.median(delays):.2f} s = {statistics.median(delays) / INTERVAL:.2f} × "
              f"interval (goal ≤ 1.5), p90 {q[-1]:.2f} s, max {max(delays):.2f} s")
    print(f"  upstream calls: {calls} over {polls} polls = {calls / max(1, polls):.2f} per poll "
          "(goal: 1 — plumes/annotated only: the watcher reads plumes without the sources.geojson join)")


if __name__ == "__main__":
    main()
