"""The upstream HTTP layer against real simulators with injected faults.

Two levels: through a running geofed server (what a user sees: statuses and messages), and with the layer's
public `UpstreamClient` talking real HTTP to a simulator (to count the upstream calls each behaviour causes).
CarbonMapper sends `Retry-After` in seconds, Sentinel Hub in milliseconds; Sentinel Hub's OAuth2 token endpoint
exercises the token refresh. How long the client actually waits is measured in `benchmarks/bench_http.py`
(figures, not assertions); here the wait it asks for is checked exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
import time
from typing import Any

import httpx
import pytest

from geofed import errors, upstreams
from geofed.http.auth import ClientCredentials
from geofed.http.client import HttpPolicy, UpstreamClient
from geofed.http.loop import run_sync
from geofed.http.policy import retry_after
from geofed.settings import Settings
from simulators import specs
from simulators.server import KEEP_ALIVE_SECONDS
from tests.conftest import GeofedServer, Sims

SH = specs()["sentinelhub"]  # the simulator's demo credentials and its token route
TOKEN_PATH = SH.aux_paths["token_url"]
CM_PLUMES = "/api/v1/catalog/plumes/annotated"
SH_COLLECTIONS = "/api/v1/catalog/1.0.0/collections"
_names = itertools.count()


def cm_client(sims: Sims, **policy: Any) -> UpstreamClient:
    defaults: dict[str, Any] = {"backoff_initial": 0.05, "cache_ttl": 0}
    return UpstreamClient(f"carbonmapper-t{next(_names)}", sims.url("carbonmapper"), title="CarbonMapper",
                          policy=HttpPolicy(**{**defaults, **policy}))


def sh_client(sims: Sims, **policy: Any) -> UpstreamClient:
    auth = ClientCredentials(sims.url("sentinelhub") + TOKEN_PATH, SH.credentials["client_id"],
                             SH.credentials["client_secret"])
    defaults: dict[str, Any] = {"backoff_initial": 0.05, "cache_ttl": 0, "retry_after_unit": "ms"}
    return UpstreamClient(f"sentinelhub-t{next(_names)}", sims.url("sentinelhub"), title="Sentinel Hub",
                          auth=auth, policy=HttpPolicy(**{**defaults, **policy}))


# ----------------------------------------------------------------- retries
def test_503_then_success_is_retried_transparently(sims: Sims) -> None:
    sims.faults("carbonmapper", status=503, count=1, path=CM_PLUMES)
    body = run_sync(cm_client(sims).get_json(CM_PLUMES, params={"limit": 1}))
    calls = sims.log("carbonmapper", CM_PLUMES)
    assert [c["status"] for c in calls] == [503, 200]
    sims.clear("carbonmapper")
    assert body == sims.get("carbonmapper", CM_PLUMES, params={"limit": 1}).json()  # the upstream's own answer


def answer(status: int, retry_after_header: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after_header} if retry_after_header is not None else {}
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://upstream.invalid/x"))


def test_retry_after_is_read_in_the_upstreams_unit() -> None:
    assert retry_after(answer(429, "1"), "s") == 1.0
    assert retry_after(answer(429, "600"), "ms") == pytest.approx(0.6)  # Sentinel Hub: milliseconds
    assert retry_after(answer(429, "0.5"), "s") == 0.5
    assert retry_after(answer(503)) is None
    assert retry_after(answer(503, "soon")) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (retry_after(answer(503, later)) or 0) <= 30  # an HTTP date: seconds from now
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after(answer(503, past)) == 0.0


def test_retry_after_in_seconds_is_honoured(sims: Sims) -> None:
    sims.faults("carbonmapper", status=429, count=1, retry_after=1, retry_after_unit="s", path=CM_PLUMES)
    run_sync(cm_client(sims).get_json(CM_PLUMES, params={"limit": 1}))
    calls = sims.log("carbonmapper", CM_PLUMES)
    assert [c["status"] for c in calls] == [429, 200]


def test_retry_after_in_milliseconds_is_honoured(sims: Sims) -> None:
    sims.faults("sentinelhub", status=429, count=1, retry_after=600, retry_after_unit="ms", path=SH_COLLECTIONS)
    run_sync(sh_client(sims).get_json(SH_COLLECTIONS))
    calls = sims.log("sentinelhub", SH_COLLECTIONS)
    assert [c["status"] for c in calls] == [429, 200]


def test_post_is_not_retried_unless_idempotent(sims: Sims) -> None:
    sims.faults("carbonmapper", status=503, count=1, path="/api/v1/stac/search")
    with pytest.raises(errors.UpstreamUnavailable):
        run_sync(cm_client(sims).post_json("/api/v1/stac/search", {"limit": 1}))
    assert len(sims.log("carbonmapper", "/api/v1/stac/search")) == 1


def test_a_429_storm_becomes_a_clear_503(geofed: GeofedServer, sims: Sims) -> None:
    sims.faults("carbonmapper", status=429, retry_after=0, path="/api/v1/catalog")
    response = geofed.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 3, "offset": 7})
    assert response.status_code == 503
    text = response.text
    assert "CarbonMapper" in text and "429" in text and "Traceback" not in text
    assert len(sims.log("carbonmapper", "/api/v1/catalog")) >= 2  # retried before giving up


def test_upstream_errors_map_to_502_and_504(geofed: GeofedServer, sims: Sims) -> None:
    sims.faults("carbonmapper", status=500, path="/api/v1/catalog")
    bad = geofed.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 4, "offset": 11})
    assert bad.status_code == 502 and "CarbonMapper" in bad.text
    sims.faults("carbonmapper", malformed=True, path="/api/v1/catalog")
    garbled = geofed.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 4, "offset": 12})
    assert garbled.status_code == 502 and "CarbonMapper" in garbled.text
    sims.clear("carbonmapper")  # a success closes the breaker again for the tests that follow
    assert geofed.get("/collections/carbonmapper-plumes/items", params={"f": "json", "limit": 1}).status_code == 200


def test_idle_connections_are_let_go_before_the_upstream_closes_them(sims: Sims) -> None:
    """A request written on a pooled connection just as the upstream closes it for idleness fails (ReadError), and
    a POST cannot be sent again: geofed's pool lets idle connections go before the upstreams' usual idle timeout
    (the simulators close them after `KEEP_ALIVE_SECONDS`, as uvicorn, Node and Apache do)."""
    configured = upstreams.policy("carbonmapper", Settings())  # what `make serve` runs with
    assert configured.keepalive_expiry < KEEP_ALIVE_SECONDS
    client = UpstreamClient("carbonmapper-keepalive", sims.url("carbonmapper"),
                            policy=dataclasses.replace(configured, cache_ttl=0))
    sims.clear("carbonmapper")

    async def calls() -> None:
        await client.get_json(CM_PLUMES, params={"limit": 1})
        await client.get_json(CM_PLUMES, params={"limit": 2})
        await asyncio.sleep(configured.keepalive_expiry + 0.5)
        await client.get_json(CM_PLUMES, params={"limit": 3})

    run_sync(calls())
    ports = [e["client_port"] for e in sims.log("carbonmapper", CM_PLUMES)]
    assert len(ports) == 3 and None not in ports
    assert ports[1] == ports[0]  # back to back: the pooled connection is reused
    assert ports[2] != ports[1]  # idle past the expiry: a new connection, never one the upstream may be closing


# ----------------------------------------------------------------- auth
def test_expired_token_is_refreshed_once(sims: Sims) -> None:
    client = sh_client(sims)
    run_sync(client.get_json(SH_COLLECTIONS))
    assert len(sims.log("sentinelhub", TOKEN_PATH)) == 1
    sims.expire_tokens("sentinelhub")

    async def burst() -> list[Any]:
        return await asyncio.gather(*[client.get_json(SH_COLLECTIONS, coalesce=False) for _ in range(10)])

    assert len(run_sync(burst())) == 10
    assert len(sims.log("sentinelhub", TOKEN_PATH)) == 2  # one refresh for ten callers who all saw 401


def test_token_reused_not_fetched_per_request(sims: Sims) -> None:
    client = sh_client(sims)
    for _ in range(20):
        run_sync(client.get_json(SH_COLLECTIONS, coalesce=False))
    assert len(sims.log("sentinelhub", TOKEN_PATH)) == 1


def test_refused_credentials_never_leak_the_secret(sims: Sims) -> None:
    auth = ClientCredentials(sims.url("sentinelhub") + TOKEN_PATH, SH.credentials["client_id"],
                             "not-the-secret-xyz")
    client = UpstreamClient("sentinelhub-badcreds", sims.url("sentinelhub"), title="Sentinel Hub", auth=auth)
    with pytest.raises(errors.UpstreamAuthError) as caught:
        run_sync(client.get_json(SH_COLLECTIONS))
    assert "Sentinel Hub" in caught.value.message
    assert "not-the-secret-xyz" not in caught.value.message


# ----------------------------------------------------------------- breaker, coalescing, cache
def test_circuit_opens_fails_fast_and_recovers(sims: Sims) -> None:
    client = cm_client(sims, breaker_failures=3, breaker_reset=1.0, attempts=1)
    sims.faults("carbonmapper", status=500, path=CM_PLUMES)
    for _ in range(3):
        with pytest.raises(errors.UpstreamError):
            run_sync(client.get_json(CM_PLUMES, params={"limit": 1}))
    with pytest.raises(errors.UpstreamUnavailable) as fast:
        run_sync(client.get_json(CM_PLUMES, params={"limit": 1}))
    assert "circuit" in fast.value.message
    assert len(sims.log("carbonmapper", CM_PLUMES)) == 3  # the fast failure sent nothing upstream
    sims.clear("carbonmapper")
    import time

    time.sleep(1.1)
    assert run_sync(client.get_json(CM_PLUMES, params={"limit": 1}))
    assert client.breaker.state == "closed"


def test_identical_concurrent_requests_are_coalesced(sims: Sims) -> None:
    client = cm_client(sims)
    sims.faults("carbonmapper", latency_ms=300, path=CM_PLUMES)

    async def twenty() -> list[Any]:
        return await asyncio.gather(*[client.get_json(CM_PLUMES, params={"limit": 2}) for _ in range(20)])

    answers = run_sync(twenty())
    assert len(answers) == 20 and all(a == answers[0] for a in answers)
    assert len(sims.log("carbonmapper", CM_PLUMES)) == 1


def test_identical_concurrent_requests_through_geofed_cause_one_upstream_call(
    geofed: GeofedServer, sims: Sims
) -> None:
    import random
    from concurrent.futures import ThreadPoolExecutor

    # one call first, so that an upstream token another test expired is refreshed before the burst (a refresh
    # is a second upstream call of its own, not a failure to coalesce)
    uncached = {"f": "json", "limit": 1, "offset": random.randrange(1000, 4000)}  # must reach the upstream
    assert geofed.get("/collections/carbonmapper-plumes/items", params=uncached).status_code == 200
    sims.clear("carbonmapper")
    # a slow upstream keeps the first call in flight while all twenty arrive, even on a loaded machine
    sims.faults("carbonmapper", latency_ms=2000, path="/api/v1/catalog/plumes")
    params = {"f": "json", "limit": 5, "offset": 31}
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: geofed.get("/collections/carbonmapper-plumes/items", params=params),
                                range(20)))
    assert all(r.status_code == 200 for r in results)
    ids = {tuple(f["id"] for f in r.json()["features"]) for r in results}
    assert len(ids) == 1
    calls = sims.log("carbonmapper", "/api/v1/catalog/plumes")
    assert len(calls) == 1, [(c["ts"], c["status"], c["query"]) for c in calls]


def test_read_cache_serves_repeated_reads(sims: Sims) -> None:
    client = cm_client(sims, cache_ttl=30)
    first = run_sync(client.get_json(CM_PLUMES, params={"limit": 3}, cache=True))
    second = run_sync(client.get_json(CM_PLUMES, params={"limit": 3}, cache=True))
    assert first == second
    assert len(sims.log("carbonmapper", CM_PLUMES)) == 1


def test_redis_cache_is_shared_by_replicas(sims: Sims, start_geofed: Any) -> None:
    import random

    from tests.conftest import require_service

    require_service("127.0.0.1", 6379, "Redis")
    shared = {"GEOFED_REDIS_URL": "redis://127.0.0.1:6379/0", "GEOFED_PAGINATION_SECRET": "test-replicas-secret"}
    a = start_geofed(**shared)
    b = start_geofed(**shared)
    # a page no earlier run asked for (Redis outlives test runs)
    params = {"f": "json", "limit": 3, "offset": random.randrange(100, 4000)}
    sims.clear("carbonmapper")
    first = a.get("/collections/carbonmapper-scenes/items", params=params)
    second = b.get("/collections/carbonmapper-scenes/items", params=params)
    assert first.status_code == second.status_code == 200
    assert [f["id"] for f in first.json()["features"]] == [f["id"] for f in second.json()["features"]]
    assert len(sims.log("carbonmapper", "/api/v1/catalog/scenes")) == 1  # B read A's cached upstream answer


# ----------------------------------------------------------------- /healthz on every call path
EPOCH_PROCESS = "/processes/epoch-aggregate-emissions/execution"


def test_healthz_follows_streamed_calls_through_failure_and_recovery(sims: Sims, start_geofed: Any) -> None:
    """Epoch's endpoint is a stream: its calls must update /healthz, be retried before the first byte, open the
    circuit after consecutive failures and close it again once the upstream recovered."""
    server: GeofedServer = start_geofed(GEOFED_BREAKER_FAILURES="2", GEOFED_BREAKER_RESET="1")
    example = server.get("/processes/epoch-aggregate-emissions", params={"f": "json"}).json()["example"]

    def epoch_health() -> dict[str, Any]:
        return server.get("/healthz").json()["upstreams"]["epoch"]

    assert server.post(EPOCH_PROCESS, json=example).status_code == 200
    up = epoch_health()
    assert up["calls"] == len(sims.log("epoch")) >= 1
    assert (up["state"], up["circuit"], up["last_status"]) == ("up", "closed", 200)

    sims.clear("epoch")
    sims.faults("epoch", status=503, count=1)
    assert server.post(EPOCH_PROCESS, json=example).status_code == 200  # retried before the first byte
    assert [e["status"] for e in sims.log("epoch")] == [503, 200]

    sims.faults("epoch", status=503)
    for _ in range(2):
        assert server.post(EPOCH_PROCESS, json=example).status_code == 503
    down = epoch_health()
    assert (down["state"], down["circuit"], down["last_status"]) == ("down", "open", 503)
    sent = len(sims.log("epoch"))
    assert server.post(EPOCH_PROCESS, json=example).status_code == 503  # fails fast: nothing sent
    assert len(sims.log("epoch")) == sent

    sims.clear("epoch")  # the upstream recovers
    time.sleep(1.1)
    assert server.post(EPOCH_PROCESS, json=example).status_code == 200
    recovered = epoch_health()
    assert (recovered["state"], recovered["circuit"], recovered["last_status"]) == ("up", "closed", 200)
    assert recovered["calls"] == up["calls"] + sent + 1  # every upstream exchange, nothing else
