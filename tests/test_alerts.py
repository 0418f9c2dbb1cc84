"""Alerts (issue 17) end to end: real geofed servers, a CarbonMapper simulator of this module's own (new plumes
appear through its `POST /_sim/plumes`, so the session's simulators keep their data), the real Mosquitto broker
(127.0.0.1:1883, read with paho-mqtt), a loopback webhook receiver, and PostgreSQL for two replicas."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from paho.mqtt import client as mqtt

from geofed.alerts.webhook import verify
from simulators import geofed_env
from simulators.server import SimulatorServer, free_port
from tests import test_jobs
from tests.conftest import GeofedServer, launch_geofed, require_service

INTERVAL = 0.5
KEY, OTHER_KEY = "alerts-key-1", "alerts-key-2"
AUTH = {"X-API-Key": KEY}
AREA = [-100.0, 40.0, -99.0, 41.0]  # an area without a seeded site: only the plumes added here
INSIDE, OUTSIDE = (-99.5, 40.5), (-97.0, 40.5)
COLLECTION = "carbonmapper-plumes"
pg_url = test_jobs.pg_url  # a fresh PostgreSQL database per test (or a REQUIRES-SERVICE skip)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Listener:
    """An MQTT subscriber on `#` collecting (topic, parsed CloudEvent)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"geofed-test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe([("collections/#", 1), ("subscriptions/#", 1)])
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert ready.wait(10), "no SUBACK from Mosquitto"

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def on(self, topic: str, source: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [m for t, m in self.messages if t == topic and (source is None or m["source"] == source)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Receiver:
    """A webhook receiver on loopback: path `/flaky` fails its first three calls, `/down` always fails."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen = [c for c in outer.calls if c["path"] == self.path]
                ok = self.path == "/ok" or (self.path == "/flaky" and len(seen) >= 3)
                outer.calls.append({"path": self.path, "headers": dict(self.headers), "body": body, "ok": ok})
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]


@pytest.fixture(scope="module")
def cm() -> Iterator[SimulatorServer]:
    require_service("127.0.0.1", 1883, "Mosquitto")
    server = SimulatorServer(names=["carbonmapper"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base_env(cm: SimulatorServer) -> dict[str, str]:
    return {**geofed_env(cm.base_urls), "GEOFED_DEMO": "0", "GEOFED_WATCH_INTERVAL": str(INTERVAL),
            "GEOFED_PUBSUB_URL": "mqtt://127.0.0.1:1883", "GEOFED_WEBHOOK_ALLOW": "127.0.0.1",
            "GEOFED_ALERT_RETRY_BASE": "0.2", "GEOFED_ALERT_MAX_ATTEMPTS": "5",
            "GEOFED_API_KEYS": f"{KEY},{OTHER_KEY}"}


@pytest.fixture(scope="module")
def server(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeofedServer]:
    started = launch_geofed(base_env, tmp_path_factory.mktemp("alerts"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def listener(cm: SimulatorServer) -> Iterator[Listener]:
    listening = Listener()
    yield listening
    listening.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiving = Receiver()
    yield receiving
    receiving.server.shutdown()


def add_plume(cm: SimulatorServer, at: tuple[float, float], **fields: Any) -> str:
    r = httpx.post(f"{cm.base_urls['carbonmapper']}/_sim/plumes", json={"lon": at[0], "lat": at[1], **fields})
    assert r.status_code == 201, r.text
    return str(r.json()["plume_id"])


def subscribe(server: GeofedServer, key: str = KEY, **body: Any) -> dict[str, Any]:
    r = server.post("/subscriptions", json={"bbox": AREA, **body}, headers={"X-API-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


def watching(server: GeofedServer) -> dict[str, Any]:
    """Waits for the watcher's first poll (its watermark): plumes added later are new."""
    return wait_until("the watcher's first poll",
                      lambda: server.get("/alerts").json()["collections"][COLLECTION]["watermark"])


def events(server: GeofedServer, sub_id: str) -> list[dict[str, Any]]:
    r = server.get(f"/subscriptions/{sub_id}/events", params={"limit": 100}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def settle(polls: int = 4) -> None:
    time.sleep(polls * INTERVAL)  # the polls that could (wrongly) deliver something again


def test_plume_in_area_and_filter_reaches_topic_and_events_once(
    cm: SimulatorServer, server: GeofedServer, listener: Listener
) -> None:
    watching(server)
    sub = subscribe(server, filter="gas='CH4' AND emission_auto > 500", delivery={"type": "mqtt"})
    pull = subscribe(server, title="everything in the area")
    topic = sub["delivery"]["topic"]
    assert topic == f"subscriptions/{sub['id']}" and sub["delivery"]["broker"] == "mqtt://127.0.0.1:1883"

    hit = add_plume(cm, INSIDE, gas="CH4", emission_auto=900)
    outside = add_plume(cm, OUTSIDE, gas="CH4", emission_auto=900)
    weak = add_plume(cm, INSIDE, gas="CH4", emission_auto=100)
    co2 = add_plume(cm, INSIDE, gas="CO2", emission_auto=5000)
    wait_until("the matching plume on the subscription's topic", lambda: listener.on(topic))
    wait_until("all four plumes on the collection channel", lambda: {
        m["data"]["id"] for m in listener.on(f"collections/{COLLECTION}", server.url)} >= {hit, outside, weak, co2})
    settle()

    [message] = listener.on(topic)
    assert message["type"] == "org.ogc.api.collection.item.create"
    data = message["data"]
    assert data["id"] == hit and data["geometry"] == {"type": "Point", "coordinates": list(INSIDE)}
    props = data["properties"]
    assert props["pubtime"] and props["datetime"] and props["gas"] == "CH4" and props["emission_auto"] == 900
    links = {link["rel"]: link["href"] for link in data["links"]}
    assert links["canonical"] == f"{server.url}/collections/{COLLECTION}/items/{hit}"
    assert links["item"] == f"{server.url}/stac/collections/{COLLECTION}/items/{hit}"
    assert httpx.get(links["canonical"], params={"f": "json"}, timeout=30).json()["id"] == hit

    [event] = events(server, sub["id"])
    assert event["item"] == hit and event["status"] == "delivered" and event["attempts"] == 1
    assert event["id"] == message["id"]  # the idempotency key travels as the CloudEvent id
    assert sorted(e["item"] for e in events(server, pull["id"])) == sorted([hit, weak, co2])
    assert all(e["status"] == "stored" for e in events(server, pull["id"]))
    channel = [m["data"]["id"] for m in listener.on(f"collections/{COLLECTION}", server.url)]
    assert sorted(channel) == sorted({*channel}), "a collection notification was published twice"

    page = server.get(f"/subscriptions/{pull['id']}/events", params={"limit": 2}, headers=AUTH).json()
    assert page["numberMatched"] == 3 and page["numberReturned"] == 2
    assert any(link["rel"] == "next" for link in page["links"])


def test_subscriptions_need_a_key_and_belong_to_it(server: GeofedServer) -> None:
    assert server.post("/subscriptions", json={"bbox": AREA}).status_code == 401
    assert server.post("/subscriptions", json={"bbox": AREA}, headers={"X-API-Key": "wrong"}).status_code == 403
    mine = subscribe(server)
    assert server.get(f"/subscriptions/{mine['id']}", headers={"X-API-Key": OTHER_KEY}).status_code == 404
    assert mine["id"] not in [s["id"] for s in server.get("/subscriptions", headers={"X-API-Key": OTHER_KEY})
                              .json()["subscriptions"]]
    assert mine["id"] in [s["id"] for s in server.get("/subscriptions", headers=AUTH).json()["subscriptions"]]
    for body in ({"bbox": AREA, "delivery": {"type": "webhook", "url": "http://10.0.0.1/hook"}},
                 {"bbox": AREA, "delivery": {"type": "webhook", "url": "http://169.254.169.254/latest"}},
                 {"bbox": AREA, "delivery": {"type": "webhook", "url": "http://localhost:1/hook"}},
                 {"bbox": AREA, "filter": "no_such_property = 1"},
                 {"bbox": AREA, "filter": "gas = "},
                 {"geometry": {"type": "Point", "coordinates": [500, 0]}},
                 {}):
        r = server.post("/subscriptions", json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
    assert server.delete(f"/subscriptions/{mine['id']}", headers={"X-API-Key": OTHER_KEY}).status_code == 404
    assert server.delete(f"/subscriptions/{mine['id']}", headers=AUTH).status_code == 204
    assert server.get(f"/subscriptions/{mine['id']}", headers=AUTH).status_code == 404


def test_webhook_signed_retried_delivered_once_then_dead_letter(
    cm: SimulatorServer, server: GeofedServer, receiver: Receiver
) -> None:
    watching(server)
    flaky = subscribe(server, delivery={"type": "webhook", "url": f"{receiver.url}/flaky"})
    down = subscribe(server, delivery={"type": "webhook", "url": f"{receiver.url}/down"})
    secret = flaky["delivery"]["secret"]
    assert "secret" not in server.get(f"/subscriptions/{flaky['id']}", headers=AUTH).json()["delivery"]
    plume = add_plume(cm, INSIDE, emission_auto=700)
    wait_until("the webhook's success", lambda: any(c["ok"] for c in receiver.on("/flaky")))
    dead = wait_until("the dead letter", lambda: server.get(f"/subscriptions/{down['id']}", headers=AUTH)
                      .json()["deadLetters"], timeout=30)
    settle()

    calls = receiver.on("/flaky")
    assert [c["ok"] for c in calls] == [False, False, False, True]
    keys = {c["headers"]["Idempotency-Key"] for c in calls}
    assert len(keys) == 1 and len({c["body"] for c in calls}) == 1
    for call in calls:
        assert verify(secret, call["body"], call["headers"]["X-Geofed-Signature"])
    assert not verify(down["delivery"]["secret"], calls[0]["body"], calls[0]["headers"]["X-Geofed-Signature"])
    body = json.loads(calls[0]["body"])
    assert body["id"] == keys.pop() and body["data"]["id"] == plume
    doc = server.get(f"/subscriptions/{flaky['id']}", headers=AUTH).json()
    assert doc["deliveries"]["delivered"] == 1 and doc["deliveries"]["pending"] == 0
    [event] = events(server, flaky["id"])
    assert event["attempts"] == 4 and event["status"] == "delivered"
    assert len(receiver.on("/down")) == 5 and dead[0]["item"] == plume and dead[0]["attempts"] == 5
    assert dead[0]["lastError"]


def test_restart_between_appearance_and_poll_delivers_once(
    cm: SimulatorServer, base_env: dict[str, str], tmp_path: Path, listener: Listener
) -> None:
    env = {**base_env, "GEOFED_WATCH_INTERVAL": "1"}
    port = free_port()
    first = launch_geofed(env, tmp_path / "data", port=port)
    try:
        watching(first)
        sub = subscribe(first, delivery={"type": "mqtt"})
    finally:
        first.stop()
    plume = add_plume(cm, INSIDE, emission_auto=800)  # published while no server watches
    second = launch_geofed(env, tmp_path / "data", port=port)
    try:
        topic = sub["delivery"]["topic"]
        wait_until("the alert after the restart", lambda: listener.on(topic))
        time.sleep(4)  # several polls
        assert [m["data"]["id"] for m in listener.on(topic)] == [plume]
        assert [e["item"] for e in events(second, sub["id"])] == [plume]
    finally:
        second.stop()


def test_two_servers_on_one_postgresql_deliver_each_event_once(
    cm: SimulatorServer, base_env: dict[str, str], tmp_path: Path, listener: Listener, receiver: Receiver,
    pg_url: str,
) -> None:
    env = {**base_env, "GEOFED_DATABASE_URL": pg_url, "GEOFED_PAGINATION_SECRET": "alerts-test-" + "x" * 32}
    a = launch_geofed(env, tmp_path / "a")
    b = launch_geofed(env, tmp_path / "b")
    try:
        watching(a)
        sub = subscribe(a, delivery={"type": "mqtt"})
        subscribe(b, delivery={"type": "webhook", "url": f"{receiver.url}/ok"})
        plumes = {add_plume(cm, INSIDE, emission_auto=600 + i) for i in range(3)}
        topic = sub["delivery"]["topic"]
        wait_until("three alerts", lambda: len(listener.on(topic)) >= 3)
        wait_until("three webhooks", lambda: len([c for c in receiver.on("/ok")
                                                  if json.loads(c["body"])["data"]["id"] in plumes]) >= 3)
        settle(6)
        assert sorted(m["data"]["id"] for m in listener.on(topic)) == sorted(plumes)
        hooks = [json.loads(c["body"])["data"]["id"] for c in receiver.on("/ok")]
        assert sorted(p for p in hooks if p in plumes) == sorted(plumes)
        channel = [m["data"]["id"] for m in listener.on(f"collections/{COLLECTION}")
                   if m["source"] in (a.url, b.url) and m["data"]["id"] in plumes]
        assert sorted(channel) == sorted(plumes)
        for server in (a, b):  # both replicas read the same subscriptions and events
            assert sorted(e["item"] for e in events(server, sub["id"])) == sorted(plumes)
    finally:
        a.stop()
        b.stop()


def test_asyncapi_and_collection_advertise_the_channel(server: GeofedServer) -> None:
    doc = server.get("/asyncapi", params={"f": "json"}).json()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert f"collections/{COLLECTION}" in addresses
    collection = server.get(f"/collections/{COLLECTION}", params={"f": "json"}).json()
    hubs = [link for link in collection["links"] if link["rel"] == "hub"]
    assert hubs and hubs[0]["href"] == "mqtt://127.0.0.1:1883" and f"collections/{COLLECTION}" in hubs[0]["title"]
    conformance = server.get("/conformance", params={"f": "json"}).json()["conformsTo"]
    assert any("ogcapi-pubsub-1" in c for c in conformance)
    assert server.get("/alerts").json()["pubsub"]["channels"] == [f"collections/{COLLECTION}"]


# ----------------------------------------------------------------- scenes over the subscriptions' areas
SCENE_AREA = [10.0, 50.0, 11.0, 51.0]  # no seeded scene of the last days anywhere: only the scenes added here
SH_SCENES = "sentinelhub:sentinel-2-l2a"


@pytest.fixture(scope="module")
def scene_sims() -> Iterator[SimulatorServer]:
    server = SimulatorServer(names=["sentinelhub", "spaceknow"]).start()
    httpx.post(f"{server.base_urls['spaceknow']}/_sim/config", json={"polls": 0})  # pipelines resolve at once
    yield server
    server.stop()


def add_scene(sims: SimulatorServer, upstream: str, box: list[float]) -> str:
    r = httpx.post(f"{sims.base_urls[upstream]}/_sim/scenes", json={"bbox": box})
    assert r.status_code == 201, r.text
    return str(r.json()["id" if upstream == "sentinelhub" else "sceneId"])


def test_new_scene_in_a_subscription_area_reaches_events_once(scene_sims: SimulatorServer, tmp_path: Path) -> None:
    env = {**geofed_env(scene_sims.base_urls), "GEOFED_DEMO": "0", "GEOFED_WATCH_INTERVAL": str(INTERVAL),
           "GEOFED_API_KEYS": KEY, "GEOFED_WATCH_SCENES": SH_SCENES}
    server = launch_geofed(env, tmp_path / "scenes")
    try:
        sub = subscribe(server, bbox=SCENE_AREA)
        narrow = subscribe(server, bbox=SCENE_AREA, collections=["spaceknow-scenes"], filter="provider = 'pl'")
        collections = (SH_SCENES, "spaceknow-scenes")
        wait_until("the first scene searches over the area", lambda: all(
            server.get("/alerts").json()["collections"][c].get("area") for c in collections))
        before = server.get("/alerts").json()["collections"]
        inside = {add_scene(scene_sims, "sentinelhub", [10.4, 50.4, 10.6, 50.6]),
                  add_scene(scene_sims, "spaceknow", [10.4, 50.4, 10.6, 50.6])}
        outside = {add_scene(scene_sims, "sentinelhub", [12.4, 50.4, 12.6, 50.6]),
                   add_scene(scene_sims, "spaceknow", [12.4, 50.4, 12.6, 50.6])}
        wait_until("both scenes in the area's events", lambda: {e["item"] for e in events(server, sub["id"])} >= inside)
        settle()
        found = events(server, sub["id"])
        assert sorted(e["item"] for e in found) == sorted(inside), "a scene missing, doubled or outside the area"
        assert {e["collection"] for e in found} == set(collections)
        for event in found:
            data = event["message"]["data"]
            assert data["properties"]["datetime"] and data["properties"]["pubtime"]
            links = {link["rel"]: link["href"] for link in data["links"]}
            assert links["item"].startswith(f"{server.url}/stac/collections/{event['collection']}/items/")
            assert ("canonical" in links) == (event["collection"] == "spaceknow-scenes")  # STAC-only member
        assert [e["item"] for e in events(server, narrow["id"])] == [i for i in inside if i not in {
            e["item"] for e in found if e["collection"] == SH_SCENES}]
        assert not outside & {e["item"] for e in found}
        state = server.get("/alerts").json()["collections"]
        for cid in collections:  # one search per poll over the union of the areas, whatever the subscriptions
            assert state[cid]["area"] == SCENE_AREA
            pages, polls = (state[cid][k] - before[cid][k] for k in ("upstreamPages", "polls"))
            assert polls >= 4 and pages == polls
    finally:
        server.stop()
