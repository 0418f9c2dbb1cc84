"""Abuse (issue 15, item 4) and the pygeoapi 500s found by schemathesis (item 5): every case a clear 4xx in
OGC exception JSON (or STAC error JSON under /stac), and the server still healthy afterwards.

Runs against the session `geofed` server (simulators behind it); one extra server for API keys and the rate
limit. pygeoapi workaround tests are marked `# pygeoapi 0.24:` (geofed/ogc/workarounds.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from geofed.settings import Settings
from stac_bridge.token import TokenSigner
from tests.conftest import GeofedServer, require_service

COLLECTION = "carbonmapper-plumes"
ITEMS = f"/collections/{COLLECTION}/items"


def healthy(server: GeofedServer) -> None:
    assert server.get("/healthz").status_code == 200
    assert server.get(ITEMS, params={"limit": 1}).status_code == 200


def ogc_error(response: httpx.Response, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body.get("code") or body.get("type"), body
    if parameter:
        assert f"'{parameter}'" in (body.get("description") or body.get("detail") or ""), body
    return body


# ----------------------------------------------------------------- 1. CQL2 bounded before parsing
def or_text(n: int) -> str:
    return " OR ".join(f"gas='x{i}'" for i in range(n))


def not_text(n: int) -> str:
    return "NOT (" * n + "gas='CH4'" + ")" * n


def or_json(n: int) -> dict[str, Any]:
    return {"op": "or", "args": [{"op": "=", "args": [{"property": "gas"}, f"x{i}"]} for i in range(n)]}


def not_json(n: int) -> str:
    """As JSON text: the json module itself cannot encode 3 000 levels."""
    return '{"op": "not", "args": [' * n + '{"op": "=", "args": [{"property": "gas"}, "CH4"]}' + "]}" * n


HUGE = {"or20000": (or_text(20_000), json.dumps(or_json(20_000))), "not3000": (not_text(3000), not_json(3000)),
        "or900": (or_text(900), json.dumps(or_json(900)))}  # or900: under 10 000 characters, 900 levels deep


@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_or_deep_filters_are_400_naming_filter(geofed: GeofedServer, case: str) -> None:
    text, tree = HUGE[case]
    # OGC: POST items with CQL2 JSON; STAC: POST search with CQL2 text and with CQL2 JSON
    json_headers = {"Content-Type": "application/json"}
    ogc_error(geofed.post(ITEMS, content=tree, headers=json_headers), 400, "filter")
    prefix = f'{{"collections": ["{COLLECTION}"], '
    for body in (prefix + f'"filter-lang": "cql2-text", "filter": {json.dumps(text)}}}',
                 prefix + f'"filter-lang": "cql2-json", "filter": {tree}}}'):
        response = geofed.post("/stac/search", content=body, headers=json_headers)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["parameter"] == "filter"
    # GET faces: a query string over uvicorn's request-line limit (h11, 16 KiB) is refused by uvicorn (400);
    # httpx refuses to even build a URL that long, so it goes over a raw socket
    for path in (ITEMS, "/stac/search"):
        query = str(httpx.QueryParams({"filter": text}))
        if len(query) < 15_000:
            response = geofed.get(path, params={"filter": text})
            assert response.status_code == 400 and "'filter'" in response.text, response.text[:300]
        else:
            assert raw_get_status(geofed, f"{path}?{query}") == 400
    healthy(geofed)


def raw_get_status(server: GeofedServer, target: str) -> int:
    host, port = httpx.URL(server.url).host, httpx.URL(server.url).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(sock.recv(64).split(b" ")[1])


def test_get_filter_bounded_before_pygeoapi_parses_it(geofed: GeofedServer) -> None:
    """pygeoapi parses and walks GET `filter=` recursively (itemtypes.get_collection_items) before geofed's
    provider sees it: 250 ORs (~3 700 characters) used to be a RecursionError there, 200 NOTs a SyntaxError."""
    for path in (ITEMS, "/stac/search", f"/stac/collections/{COLLECTION}/items"):
        for params in ({"filter": or_text(250)}, {"filter": not_json(200), "filter-lang": "cql2-json"},
                       {"filter": json.dumps(or_json(250)), "filter-lang": "cql2-json"}):
            response = geofed.get(path, params=params)
            assert response.status_code == 400, (path, response.text[:300])
            assert "'filter'" in response.text and "levels" in response.text, response.text[:300]
    # a wide but legal filter still works
    assert geofed.get(ITEMS, params={"filter": or_text(50) + " OR gas='CH4'", "limit": 2}).status_code == 200
    healthy(geofed)


def test_filter_functions_never_reach_eval(geofed: GeofedServer, tmp_path: Path) -> None:
    """pygeofilter's native evaluator writes a function's name into the Python it `eval`s: `eval('…')` in a
    filter ran code on the server. Only casei/accenti/lower/upper are accepted."""
    marker = tmp_path / "pwned"
    payload = f"eval('open(\"{marker}\", \"w\").close() or 1') = 1"
    for path in (ITEMS, "/stac/search"):
        response = geofed.get(path, params={"filter": payload, "collections": COLLECTION})
        assert response.status_code == 400, response.text[:300]
        assert "unknown function" in response.text
    response = geofed.post("/stac/search", json={"collections": [COLLECTION], "filter-lang": "cql2-json", "filter": {
        "op": "=", "args": [{"op": "exec", "args": [f"open({str(marker)!r}, 'w').close()"]}, 1]}})
    assert response.status_code == 400, response.text[:300]
    assert not marker.exists()


# ----------------------------------------------------------------- 2. body size, vertices, limit
def test_body_over_the_limit_is_413(geofed: GeofedServer) -> None:
    big = b'{"collections": ["' + b"x" * (64 * 1024 * 1024) + b'"]}'
    response = geofed.post("/stac/search", content=big, headers={"Content-Type": "application/json"}, timeout=120)
    assert response.status_code == 413
    assert response.json()["code"] == "PayloadTooLarge"  # STAC error JSON
    response = geofed.post(ITEMS, content=big, headers={"Content-Type": "application/json"}, timeout=120)
    body = ogc_error(response, 413)
    assert body["status"] == 413  # OGC exception JSON

    def chunks() -> Iterator[bytes]:  # no Content-Length: read incrementally, refused past the limit
        for _ in range(80):
            yield b" " * (64 * 1024)

    response = geofed.post("/stac/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    healthy(geofed)


def polygon(vertices: int) -> dict[str, Any]:
    import math

    ring = [[10 * math.cos(2 * math.pi * i / vertices), 10 * math.sin(2 * math.pi * i / vertices)]
            for i in range(vertices)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def test_geometry_inputs_over_the_vertex_limit_are_400(geofed: GeofedServer) -> None:
    huge = polygon(Settings().max_vertices + 10)
    response = geofed.post("/stac/search", json={"collections": [COLLECTION], "intersects": huge})
    assert response.status_code == 400 and response.json()["parameter"] == "intersects", response.text[:300]
    assert geofed.post("/stac/search", json={"collections": [COLLECTION], "intersects": polygon(50)}).status_code \
        == 200
    inputs = {"geometry": huge, "start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}
    response = geofed.post("/processes/sentinelhub-statistics/execution", json={"inputs": inputs})
    ogc_error(response, 400, "geometry")
    filter_ = {"op": "s_intersects", "args": [{"property": "geometry"}, huge]}
    ogc_error(geofed.post(ITEMS, json=filter_), 400, "filter")
    healthy(geofed)


def test_limit_above_the_maximum_is_clamped(geofed: GeofedServer) -> None:
    # OGC API Features and STAC API: "the server must return the maximum possible number of items, rather
    # than responding with an error"
    response = geofed.get(ITEMS, params={"limit": 100_000})
    assert response.status_code == 200
    assert len(response.json()["features"]) <= 1000
    maximum = Settings().stac_max_limit
    response = geofed.get("/stac/search", params={"collections": COLLECTION, "limit": 100_000})
    assert response.status_code == 200, response.text[:300]
    page = response.json()
    assert len(page["features"]) <= maximum  # stac-fastapi alone crops to 10 000
    nxt = [link for link in page["links"] if link["rel"] == "next"]
    assert not nxt or f"limit={maximum}" in nxt[0]["href"]
    response = geofed.post("/stac/search", json={"collections": [COLLECTION], "limit": 100_000})
    assert response.status_code == 200
    assert len(response.json()["features"]) <= maximum


# ----------------------------------------------------------------- 3. the pygeoapi 500s (schemathesis)
POINT_FILTER = {"op": "s_intersects", "args": [{"property": "geometry"}]}
BAD_GEOMETRIES = {
    "four-ordinates": {"type": "Point", "coordinates": [1, 2, 3, 4]},
    "ragged-ring": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1]]]},
    "empty-polygon": {"type": "Polygon", "coordinates": []},
}


def test_post_items_without_content_type_is_400(geofed: GeofedServer) -> None:  # pygeoapi 0.24: TypeError
    ogc_error(geofed.post(ITEMS, content=b'{"op": "=", "args": [{"property": "gas"}, "CH4"]}'), 400, "filter")
    ogc_error(geofed.post(ITEMS), 400, "filter")


def test_post_items_non_utf8_body_is_400(geofed: GeofedServer) -> None:  # pygeoapi 0.24: UnboundLocalError
    body = b'{"op": "=", "args": [{"property": "gas"}, "\xff\xfe"]}'
    ogc_error(geofed.post(ITEMS, content=body, headers={"Content-Type": "application/json"}), 400, "filter")


@pytest.mark.parametrize("name", sorted(BAD_GEOMETRIES))
def test_geometry_literals_shapely_refuses_are_400(geofed: GeofedServer, name: str) -> None:
    filter_ = {"op": "s_intersects", "args": [{"property": "geometry"}, BAD_GEOMETRIES[name]]}
    ogc_error(geofed.post(ITEMS, json=filter_), 400)
    response = geofed.post("/stac/search", json={"collections": [COLLECTION], "filter": filter_})
    assert response.status_code == 400 and response.json()["parameter"] == "filter"


def test_casei_like_and_casei_property_are_evaluated(geofed: GeofedServer) -> None:
    """pygeofilter 0.4 turns casei() into a Function the native evaluator cannot run (TypeError in LIKE,
    NameError `lower`): geofed folds it on literals and evaluates it on properties."""
    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text[:300]
        return {f["id"] for f in response.json()["features"]}

    truth = ids(geofed.get(ITEMS, params={"filter": "gas='CH4'", "limit": 1000}))
    assert truth
    cases = [
        {"op": "like", "args": [{"property": "gas"}, {"op": "casei", "args": ["ch%"]}]},
        {"op": "like", "args": [{"op": "casei", "args": [{"property": "gas"}]}, {"op": "casei", "args": ["CH4"]}]},
        {"op": "=", "args": [{"op": "casei", "args": [{"property": "gas"}]}, {"op": "casei", "args": ["cH4"]}]},
    ]
    for filter_ in cases:
        assert ids(geofed.post(ITEMS, json=filter_, params={"limit": 1000})) == truth, filter_
        stac = geofed.post("/stac/search", json={"collections": [COLLECTION], "filter": filter_, "limit": 5})
        assert stac.status_code == 200, (filter_, stac.text[:300])
        assert stac.json()["features"], filter_
    healthy(geofed)


# ----------------------------------------------------------------- 4. paging tokens
def test_paging_secret_rotation() -> None:
    old, new = TokenSigner(b"old-secret"), TokenSigner(b"new-secret, old-secret")
    token = old.encode({"m": 1}, "q")
    assert new.decode(token, "q") == {"m": 1}  # tokens issued before the rotation still work
    fresh = new.encode({"m": 2}, "q")
    assert TokenSigner(b"new-secret").decode(fresh, "q") == {"m": 2}  # signed with the first key
    with pytest.raises(Exception, match="not a valid paging token"):
        old.decode(fresh, "q")
    with pytest.raises(Exception, match="not a valid paging token"):  # foreign deployment
        TokenSigner(b"other").decode(token, "q")
    with pytest.raises(Exception, match="not a valid paging token"):  # tampered
        new.decode(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], "q")
    with pytest.raises(Exception, match="different query"):
        new.decode(token, "other-query")
    expired = TokenSigner(b"new-secret", ttl=-1).encode({}, "q")
    with pytest.raises(Exception, match="expired"):
        new.decode(expired, "q")


def test_bad_paging_tokens_are_400_on_the_server(geofed: GeofedServer) -> None:
    for token in ("garbage", "eyJ2IjoyfQ.c2ln", TokenSigner(b"foreign").encode({}, "q")):
        response = geofed.get("/stac/search", params={"collections": COLLECTION, "token": token})
        assert response.status_code == 400 and response.json()["parameter"] == "token", response.text[:200]


# ----------------------------------------------------------------- 5. no client-supplied URL is fetched
class Canary:
    def __init__(self) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                canary.hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_HEAD = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/canary"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.server.shutdown()


def test_no_client_supplied_url_is_ever_fetched(geofed: GeofedServer, canary: Canary) -> None:
    url = canary.url
    headers = {name: url for name in ("Referer", "Origin", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded",
                                      "X-Original-URL", "X-Rewrite-URL", "Link", "Location", "Content-Location",
                                      "Accept-Language", "X-API-Key", "Prefer", "Callback", "X-Callback-URL")}
    params = {k: url for k in ("bbox", "datetime", "sortby", "properties", "q", "f", "lang", "crs", "bbox-crs",
                               "filter-crs", "filter-lang", "skipGeometry", "offset", "limit", "gas", "token",
                               "collections", "ids", "fields", "intersects", "next", "href")}
    filters = [f"gas='{url}'", f"gas LIKE '{url}%'", f"gas IN ('{url}')", f"casei(gas) = casei('{url}')"]
    for filter_ in filters:
        geofed.get(ITEMS, params={**params, "filter": filter_}, headers=headers)
        geofed.get(ITEMS, params={"filter": filter_}, headers=headers)
        geofed.get("/stac/search", params={"collections": COLLECTION, "filter": filter_}, headers=headers)
    geofed.get(f"{ITEMS}/{httpx.URL(url)}", headers=headers)
    geofed.get(f"/stac/collections/{COLLECTION}/items/x", params={"href": url}, headers=headers)
    geofed.get("/collections", params={"f": url}, headers=headers)
    for body in (
        {"collections": [url], "ids": [url], "datetime": url, "token": url, "sortby": [{"field": url}],
         "fields": {"include": [url]}, "filter": {"op": "=", "args": [{"property": "gas"}, url]},
         "links": [{"rel": "next", "href": url}], "href": url, "next": url, "conformsTo": [url]},
        {"collections": [COLLECTION], "filter": f"gas='{url}'", "filter-lang": "cql2-text",
         "links": [{"rel": "next", "href": url, "body": {"token": url}}]},
        {"collections": [COLLECTION], "token": url},
    ):
        geofed.post("/stac/search", json=body, headers=headers)
    geofed.post(ITEMS, json={"op": "=", "args": [{"property": "gas"}, url]}, headers=headers)
    processes = [p["id"] for p in geofed.get("/processes").json()["processes"]]
    assert processes
    subscriber = {"successUri": url, "inProgressUri": url, "failedUri": url}
    for pid in processes:
        inputs = geofed.get(f"/processes/{pid}").json()["inputs"]
        for value in (url, {"href": url}, [url], {"type": "Feature", "geometry": None, "properties": {"url": url}}):
            body = {"inputs": {name: value for name in inputs}, "subscriber": subscriber,
                    "outputs": {"result": {"transmissionMode": "reference", "href": url}}, "response": "document"}
            for prefer in ("respond-async", "respond-sync"):
                geofed.post(f"/processes/{pid}/execution", json=body, headers={**headers, "Prefer": prefer})
    time.sleep(3)  # time for any job to fail or finish (and for a callback, were one ever sent)
    assert canary.hits == []
    healthy(geofed)


# ----------------------------------------------------------------- 6. API keys file + per-key rate limit
def test_api_keys_file_rotates_and_rate_limit_per_key(start_geofed: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# operators' keys\nkey-alpha\n\n")
    server = start_geofed(GEOFED_API_KEYS_FILE=str(keys), GEOFED_RATE_LIMIT="6/minute")
    assert server.get("/jobs", headers={"X-API-Key": "key-alpha"}).status_code == 200
    assert server.get("/jobs", headers={"X-API-Key": "key-beta"}).status_code == 403
    time.sleep(1.1)
    keys.write_text("key-beta\n")  # rotation, no restart
    time.sleep(1.1)
    assert server.get("/jobs", headers={"X-API-Key": "key-beta"}).status_code == 200
    assert server.get("/jobs", headers={"X-API-Key": "key-alpha"}).status_code == 403
    statuses = [server.get("/jobs", headers={"X-API-Key": "key-beta"}).status_code for _ in range(6)]
    assert statuses[:4] == [200] * 4 and statuses[-1] == 429, statuses
    limited = server.get("/stac/search", headers={"Authorization": "Bearer key-beta"})
    assert limited.status_code == 429 and limited.json()["code"] == "TooManyRequests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    ogc = server.get("/collections", headers={"X-API-Key": "key-beta"})
    assert ogc.status_code == 429 and ogc.json()["status"] == 429
    # another caller has its own budget; /healthz is never limited
    assert server.get("/collections", headers={"X-API-Key": "nope"}).status_code == 200
    assert server.get("/healthz", headers={"X-API-Key": "key-beta"}).status_code == 200
    assert "key-beta" not in server.log_text() and "key-alpha" not in server.log_text()


def test_rate_limit_uses_redis_when_configured() -> None:
    require_service("127.0.0.1", 6379, "Redis")
    from limits.storage import RedisStorage

    from geofed.ratelimit import RateLimit

    settings = Settings(rate_limit="2/minute", redis_url="redis://127.0.0.1:6379/15", api_keys="k1")

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never reached when limited
        pass

    limiter = RateLimit(app, settings)
    assert isinstance(limiter.store, RedisStorage)
    who = f"test-{time.time_ns()}"
    assert limiter._hit(who) is None and limiter._hit(who) is None
    wait = limiter._hit(who)
    assert wait is not None and 1 <= wait <= 60
