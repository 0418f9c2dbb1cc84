"""The circuit breaker, alone and inside `UpstreamClient`, with the Epoch simulator in-process.

The simulator runs in this process behind `httpx.ASGITransport` (the client's `transport=` seam); faults are
injected through its own `/_sim/faults` route, so the client code is exercised as it is, unpatched. Epoch's
endpoint is a stream: these tests also prove that streamed calls go through the one send path (retries before
the first byte, breaker, `/healthz` record, metrics).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from geofed import errors
from geofed.http.auth import StaticBearer
from geofed.http.breaker import CircuitBreaker
from geofed.http.client import HttpPolicy, UpstreamClient
from geofed.observability import REGISTRY
from simulators import epoch

TOKEN = "demo-epoch-token"
PATH = epoch.PATH
_names = itertools.count()


# ------------------------------------------------------------------------------------------ the state machine
def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failures=3, reset_after=60)
    for _ in range(2):
        breaker.failure()
        assert breaker.state == "closed" and breaker.allow()
    breaker.success()  # a success in between resets the count: failures must be consecutive
    for _ in range(2):
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert 55 < breaker.retry_in() <= 60


def test_half_open_lets_one_trial_through_and_its_verdict_decides() -> None:
    breaker = CircuitBreaker(failures=1, reset_after=0.05)
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    time.sleep(0.06)
    assert breaker.state == "half-open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # everyone else waits for its verdict
    breaker.failure()  # the trial failed: open again, for a full period
    assert breaker.state == "open" and not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.failures == 0
    assert all(breaker.allow() for _ in range(5))


def test_a_trial_without_verdict_never_blocks_the_circuit() -> None:
    breaker = CircuitBreaker(failures=1, reset_after=0.05)
    breaker.failure()
    time.sleep(0.06)
    assert breaker.allow() and not breaker.allow()
    breaker.release()  # e.g. the trial was cancelled
    assert breaker.allow()  # the next caller is the trial
    # a trial whose caller vanished without even releasing it is given up after one reset period
    time.sleep(0.06)
    assert breaker.allow()


# ------------------------------------------------------------------------------------------ inside the client
class Epoch:
    """An in-process Epoch simulator and clients bound to it."""

    def __init__(self) -> None:
        self.app = epoch.create_app(credentials={"token": TOKEN}, plots=40)
        self.admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://epoch.sim")

    def client(self, **policy: Any) -> UpstreamClient:
        defaults: dict[str, Any] = {"backoff_initial": 0.01, "cache_ttl": 0, "breaker_reset": 0.3}
        client = UpstreamClient(
            f"epoch-breaker-t{next(_names)}", "http://epoch.sim", title="Epoch", auth=StaticBearer(TOKEN),
            policy=HttpPolicy(**{**defaults, **policy}), transport=httpx.ASGITransport(app=self.app),
        )
        client.health.mode = "real"  # what `geofed.upstreams` records for a configured upstream
        return client

    async def faults(self, **faults: Any) -> None:
        (await self.admin.post("/_sim/faults", json={"path": PATH, **faults})).raise_for_status()

    async def clear(self) -> None:
        (await self.admin.delete("/_sim/faults")).raise_for_status()
        (await self.admin.delete("/_sim/log")).raise_for_status()

    async def statuses(self) -> list[int]:
        log = (await self.admin.get("/_sim/log")).json()
        return [e["status"] for e in log if e["path"] == PATH]


@asynccontextmanager
async def simulator() -> AsyncIterator[Epoch]:
    sim = Epoch()
    try:
        yield sim
    finally:
        await sim.admin.aclose()


async def read_stream(client: UpstreamClient) -> bytes:
    async with client.stream("GET", PATH, params={"limit": "3"}) as response:
        return b"".join([chunk async for chunk in response.aiter_bytes()])


def run(scenario: Callable[[Epoch], Awaitable[None]]) -> None:
    async def main() -> None:
        async with simulator() as sim:
            await scenario(sim)

    asyncio.run(main())


def metric_calls(name: str) -> float:
    """The sum of `geofed_upstream_calls_total` over statuses for upstream `name`."""
    return sum(
        sample.value
        for metric in REGISTRY.collect() if metric.name == "geofed_upstream_calls"
        for sample in metric.samples
        if sample.name == "geofed_upstream_calls_total" and sample.labels["upstream"] == name
    )


def test_streamed_503_is_retried_before_the_first_byte() -> None:
    async def scenario(sim: Epoch) -> None:
        client = sim.client()
        await sim.faults(status=503, count=2)
        body = await read_stream(client)
        assert body.count(b"\n") >= 3  # the full answer of the third attempt
        assert await sim.statuses() == [503, 503, 200]
        health = client.health.as_dict()
        assert health["calls"] == 3 == metric_calls(client.name)
        assert health["state"] == "up" and health["circuit"] == "closed" and health["last_status"] == 200

    run(scenario)


def test_streamed_failures_open_the_circuit_and_a_success_closes_it() -> None:
    async def scenario(sim: Epoch) -> None:
        client = sim.client(attempts=1, breaker_failures=3)
        await sim.faults(status=503)
        for _ in range(3):
            with pytest.raises(errors.UpstreamUnavailable):
                await read_stream(client)
        assert client.health.as_dict()["state"] == "down"
        assert client.health.as_dict()["circuit"] == "open"
        with pytest.raises(errors.UpstreamUnavailable) as fast:
            await read_stream(client)
        assert "circuit" in fast.value.message
        assert len(await sim.statuses()) == 3  # failing fast sent nothing upstream
        await sim.clear()  # the upstream recovers
        await asyncio.sleep(0.35)
        assert client.health.as_dict()["circuit"] == "half-open"
        assert await read_stream(client)
        health = client.health.as_dict()
        assert health["state"] == "up" and health["circuit"] == "closed" and health["last_status"] == 200
        assert health["calls"] == 4 == metric_calls(client.name)

    run(scenario)


def test_answers_without_verdict_do_not_wedge_a_half_open_circuit() -> None:
    async def scenario(sim: Epoch) -> None:
        client = sim.client(attempts=1, breaker_failures=1)
        await sim.faults(status=500)
        with pytest.raises(errors.UpstreamError):
            await read_stream(client)
        await sim.faults(status=400)
        await asyncio.sleep(0.35)
        # the trial call is refused with a 4xx: the upstream answered, so it is up and the circuit closes
        with pytest.raises(errors.UpstreamRejected):
            await read_stream(client)
        assert client.breaker.state == "closed"
        await sim.clear()
        assert await read_stream(client)

    run(scenario)


def test_a_4xx_is_not_retried_and_not_a_breaker_failure() -> None:
    async def scenario(sim: Epoch) -> None:
        client = sim.client(breaker_failures=1)
        with pytest.raises(errors.UpstreamRejected):
            async with client.stream("GET", PATH, params={"limit": "many"}):
                pass
        assert await sim.statuses() == [400]
        assert client.breaker.state == "closed"
        assert client.health.as_dict()["state"] == "up"

    run(scenario)
