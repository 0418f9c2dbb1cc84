"""Admission control (issue 15, load): at most GEOFED_MAX_ACTIVE_REQUESTS requests are worked on at once; the
others wait their turn and are answered, or get a 503 with Retry-After once GEOFED_ADMISSION_WAIT has passed.
Probes (`/healthz`, `/metrics`) never wait. Driven through a running server whose upstream is slowed by the
CarbonMapper simulator's latency fault."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GeofedServer, Sims

PLUMES = "/api/v1/catalog/plumes"
LATENCY_MS = 2500


@pytest.fixture
def slow_plumes(sims: Sims) -> Iterator[None]:
    sims.faults("carbonmapper", path=PLUMES, latency_ms=LATENCY_MS)
    yield
    sims.clear("carbonmapper")


def plume_page(server: GeofedServer, n: int) -> Callable[[], httpx.Response]:
    # a distinct datetime per request: none is answered from another's cache or in-flight read
    params = {"f": "json", "limit": 2, "datetime": f"../2099-01-0{n + 1}T00:00:00Z"}
    return lambda: server.get("/collections/carbonmapper-plumes/items", params=params, timeout=60)


def in_threads(calls: list[Callable[[], httpx.Response]]) -> tuple[list[threading.Thread], list[Any]]:
    answers: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        answers[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads, answers


def gauge(server: GeofedServer, name: str) -> float:
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")


def test_requests_beyond_the_limit_wait_their_turn_and_are_answered(
        start_geofed: Any, sims: Sims, slow_plumes: None) -> None:
    server: GeofedServer = start_geofed(GEOFED_MAX_ACTIVE_REQUESTS="1", GEOFED_ADMISSION_WAIT="60",
                                        GEOFED_CACHE_TTL="0")
    threads, answers = in_threads([plume_page(server, n) for n in range(3)])
    deadline = time.monotonic() + 20
    while gauge(server, "geofed_requests_waiting") < 2:  # one at work, two waiting; the probe itself never waits
        assert time.monotonic() < deadline, "the requests beyond the limit were not queued"
        time.sleep(0.05)
    assert gauge(server, "geofed_requests_active") == 1
    assert server.get("/healthz").status_code == 200
    for thread in threads:
        thread.join(timeout=60)
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text[:300] for a in answers]
    assert gauge(server, "geofed_requests_waiting") == 0


@pytest.mark.parametrize(("path", "stac"), [
    ("/collections/carbonmapper-sources/items?f=json", False), ("/stac/search?collections=epoch-plots", True)])
def test_a_request_that_waits_too_long_gets_503_with_retry_after(
        start_geofed: Any, sims: Sims, slow_plumes: None, path: str, stac: bool) -> None:
    server: GeofedServer = start_geofed(GEOFED_MAX_ACTIVE_REQUESTS="1", GEOFED_ADMISSION_WAIT="0.5",
                                        GEOFED_CACHE_TTL="0")
    threads, answers = in_threads([plume_page(server, 0)])
    deadline = time.monotonic() + 20
    while gauge(server, "geofed_requests_active") < 1:
        assert time.monotonic() < deadline, "the slow request never started"
        time.sleep(0.05)
    refused = server.get(path, timeout=30)
    threads[0].join(timeout=60)
    assert answers[0].status_code == 200, answers[0].text[:300]
    assert refused.status_code == 503, refused.text[:300]
    assert int(refused.headers["Retry-After"]) >= 1
    body = refused.json()
    assert body["code"] == "ServiceUnavailable" and "busy" in body["description"]
    assert ("type" in body) is not stac  # OGC exception JSON (type/title/status/detail) or STAC error JSON
    # and the answer is documented where it can happen, with its header
    document = server.get("/stac/api" if stac else "/openapi?f=json").json()
    for path in ("/search" if stac else "/collections/carbonmapper-sources/items", "/conformance"):
        assert "Retry-After" in document["paths"][path]["get"]["responses"]["503"]["headers"], path
