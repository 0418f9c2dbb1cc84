"""The foundation as a user meets it: landing pages, conformance, OpenAPI, links, CORS, /healthz, /metrics."""

from __future__ import annotations

import http.client
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators import NAMES
from tests.conftest import GeofedServer, Sims


def hrefs(document: Any) -> list[str]:
    """Every `href` anywhere in a JSON document."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "href" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(hrefs(value))
    elif isinstance(document, list):
        for value in document:
            found.extend(hrefs(value))
    return found


def test_ogc_landing_page_json_and_html(geofed: GeofedServer) -> None:
    landing = geofed.get("/", params={"f": "json"})
    assert landing.status_code == 200
    rels = {link["rel"] for link in landing.json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    html = geofed.get("/", headers={"Accept": "text/html"})
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "geofed" in html.text


def test_ogc_conformance_and_openapi(geofed: GeofedServer) -> None:
    conformance = geofed.get("/conformance", params={"f": "json"}).json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conformance
    openapi = geofed.get("/openapi", params={"f": "json"})
    assert openapi.status_code == 200
    assert openapi.json()["openapi"].startswith("3.")


def test_stac_landing_page(geofed: GeofedServer) -> None:
    landing = geofed.get("/stac/")
    assert landing.status_code == 200
    body = landing.json()
    assert body["type"] == "Catalog"
    assert any(c.startswith("https://api.stacspec.org/v1.0") for c in body["conformsTo"])
    assert {"self", "root", "search"} <= {link["rel"] for link in body["links"]}
    assert geofed.get("/stac/api").status_code == 200


def test_both_faces_list_the_same_collections(geofed: GeofedServer) -> None:
    ogc = {c["id"] for c in geofed.get("/collections", params={"f": "json"}).json()["collections"]}
    stac: set[str] = set()
    url: str | None = f"{geofed.url}/stac/collections"
    while url:  # collection search pages the list: follow `next`
        page = httpx.get(url, timeout=60).json()
        stac |= {c["id"] for c in page["collections"]}
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert ogc, "no OGC collections configured"
    assert ogc <= stac, f"OGC collections missing from STAC: {sorted(ogc - stac)}"


@pytest.mark.parametrize("public_url", ["https://example.org/geofed", "http://proxy.invalid:8080/a/b"])
def test_every_link_uses_the_public_url(start_geofed: Any, public_url: str) -> None:
    server: GeofedServer = start_geofed(GEOFED_PUBLIC_URL=public_url)
    pages = ["/?f=json", "/collections?f=json", "/processes?f=json", "/jobs?f=json", "/stac/",
             "/stac/collections"]
    collections = server.get("/collections", params={"f": "json"}).json()["collections"]
    if collections:
        cid = collections[0]["id"]
        pages += [f"/collections/{cid}?f=json", f"/collections/{cid}/items?f=json&limit=2"]
    origin = "/".join(public_url.split("/")[:3])  # scheme://host[:port]
    for page in pages:
        response = server.get(page)
        assert response.status_code == 200, (page, response.text[:300])
        links = hrefs(response.json())
        # (upstream `via` links may point at the simulators on loopback; geofed's own address must not appear)
        assert not [h for h in links if h.startswith(server.url)], f"{page} leaks the bind address"
        ours = [h for h in links if h.startswith(origin)]
        assert ours, f"{page} has no link under {public_url}"
        wrong = [h for h in ours if not (h == public_url or h.startswith(public_url + "/")
                                         or h.startswith(public_url + "?"))]
        assert not wrong, f"{page}: links without the path prefix: {wrong[:3]}"


def test_cors_on_both_faces_and_service_routes(geofed: GeofedServer) -> None:
    for path in ["/", "/collections", "/stac/", "/stac/search", "/healthz"]:
        preflight = httpx.options(
            f"{geofed.url}{path}",
            headers={"Origin": "https://browser.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200, path
        assert preflight.headers.get("access-control-allow-origin") in ("*", "https://browser.example"), path
        simple = geofed.get(path, headers={"Origin": "https://browser.example"})
        assert simple.headers.get("access-control-allow-origin") in ("*", "https://browser.example"), path


def test_healthz_reports_each_upstream_mode(geofed: GeofedServer) -> None:
    body = geofed.get("/healthz").json()
    assert body["status"] == "ok"
    # every upstream with a service (a simulator), plus those without one (the emissions inventory)
    served = {name: u for name, u in body["upstreams"].items() if name in NAMES}
    assert set(served) == set(NAMES) and set(body["upstreams"]) - set(served) <= {"inventory"}
    assert body["upstreams"]["inventory"]["mode"] == "local"  # a service of geofed's own: always enabled
    # the test server is configured like production (URLs set): every upstream is "real" to geofed
    assert {u["mode"] for u in served.values()} == {"real"}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def upstream_calls(text: str, upstream: str) -> float:
    """`geofed_upstream_calls_total` of one upstream, summed over statuses."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text) if family.name == "geofed_upstream_calls"
        for sample in family.samples
        if sample.name == "geofed_upstream_calls_total" and sample.labels["upstream"] == upstream
    )


def test_metrics_count_requests_per_route(geofed: GeofedServer, sims: Sims) -> None:
    before = geofed.get("/metrics").text
    assert geofed.get("/conformance", params={"f": "json"}).status_code == 200
    items = geofed.get("/collections/carbonmapper-plumes/items",
                       params={"f": "json", "limit": 3, "offset": random.randrange(100, 1500)})  # not cached
    assert items.status_code == 200, items.text
    text = geofed.get("/metrics").text
    counted = {"method": "GET", "route": "/conformance", "status": "200"}
    assert metric(text, "geofed_requests_total", **counted) == metric(before, "geofed_requests_total", **counted) + 1
    assert metric(text, "geofed_request_seconds_count", method="GET", route="/conformance") >= 1
    # the items page reached CarbonMapper: exactly the upstream calls the simulator saw were counted
    seen = len([e for e in sims.log("carbonmapper") if e["status"] == 200])
    assert seen >= 1
    ok = {"upstream": "carbonmapper", "status": "200"}
    assert metric(text, "geofed_upstream_calls_total", **ok) - metric(before, "geofed_upstream_calls_total", **ok) \
        == seen


def test_healthz_calls_agree_with_metrics_for_every_upstream(geofed: GeofedServer) -> None:
    assert geofed.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 1}).status_code == 200
    for _ in range(10):  # background job polls may call an upstream between two reads: read until quiet
        first = geofed.get("/metrics").text
        health = geofed.get("/healthz").json()["upstreams"]
        last = geofed.get("/metrics").text
        if all(upstream_calls(first, n) == upstream_calls(last, n) for n in health):
            break
    assert health["carbonmapper"]["calls"] >= 1
    for name, record in health.items():
        assert record["calls"] == upstream_calls(last, name), (name, record)


def test_an_idle_client_connection_outlives_the_usual_client_and_proxy_reuse(geofed: GeofedServer) -> None:
    """A server that closes an idle connection while a client (httpx: 5 s) or a proxy (nginx: 60 s) still reuses it
    loses the request written on it as it closes; a POST cannot be re-sent. geofed keeps idle connections longer."""
    address = urlsplit(geofed.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)

    def healthz() -> int:
        connection.request("GET", "/healthz")
        response = connection.getresponse()  # RemoteDisconnected if the server closed the connection
        response.read()
        return response.status

    try:
        assert healthz() == 200
        first = connection.sock
        time.sleep(6.0)  # past uvicorn's default of 5 s
        assert healthz() == 200
        assert connection.sock is first  # the same connection, kept open: not silently reopened
    finally:
        connection.close()


def test_unknown_collection_is_a_clean_404(geofed: GeofedServer) -> None:
    response = geofed.get("/collections/no-such-collection/items", params={"f": "json"})
    assert response.status_code == 404
    assert "Traceback" not in response.text


def test_demo_mode_runs_simulators_and_says_so(start_geofed: Any) -> None:
    server: GeofedServer = start_geofed(with_simulators=False, GEOFED_DEMO="1")
    health = server.get("/healthz").json()["upstreams"]
    # every upstream with a service runs on its simulator; geofed's own services (the inventory) are local
    assert {u["mode"] for u in health.values()} == {"simulated", "local"}
    description = server.get("/", params={"f": "json"}).json()["description"]
    assert "Demo mode" in description
    collections = server.get("/collections", params={"f": "json"}).json()["collections"]
    assert collections, "demo mode should serve the upstream collections from the simulators"
    first = collections[0]["id"]
    items = server.get(f"/collections/{first}/items", params={"f": "json", "limit": 2})
    assert items.status_code == 200 and items.json()["features"]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the simulators' process")
def test_demo_simulators_run_in_a_child_process_that_ends_with_the_server(start_geofed: Any) -> None:
    server: GeofedServer = start_geofed(with_simulators=False, GEOFED_DEMO="1")
    assert server.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 1}).status_code == 200
    simulators = children(server.process.pid)
    assert len(simulators) == 1, simulators
    server.process.kill()  # no shutdown hook runs: the child must notice on its own
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while running(simulators[0]):
        assert time.monotonic() < deadline, "the demo simulators outlived the server"
        time.sleep(0.2)


def running(pid: int) -> bool:
    try:  # a zombie (ended, not yet reaped) has an empty command line
        return b"simulators.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_demo_off_without_urls_disables_upstreams(start_geofed: Any) -> None:
    server: GeofedServer = start_geofed(with_simulators=False, GEOFED_DEMO="0")
    health = server.get("/healthz").json()["upstreams"]
    assert {u["mode"] for u in health.values()} == {"disabled", "local"}
    assert server.get("/collections", params={"f": "json"}).json()["collections"] == []
    assert server.get("/stac/collections").json()["collections"] == []
