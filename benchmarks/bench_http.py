"""HTTP-layer timings: how long the upstream client waits when an upstream asks it to, and how fast it streams.

Runs the CarbonMapper, Sentinel Hub and Epoch simulators in-process behind `httpx.ASGITransport` (the client's
`transport=` seam); the gaps are read from the simulators' own request logs. Figures are printed, never asserted:

- Retry-After 1 s (CarbonMapper, seconds) → the gap should be ≈ 1 s, not the 50 ms backoff;
- Retry-After 600 (Sentinel Hub, milliseconds) → ≈ 0.6 s, not 600 s;
- a 503 without Retry-After → the jittered backoff (≈ 50–100 ms here);
- a streamed Epoch body read through the client, in MB/s.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import httpx

from geofed.http.auth import ClientCredentials, StaticBearer
from geofed.http.client import HttpPolicy, UpstreamClient
from simulators import carbonmapper, epoch, sentinelhub, specs

CM_PLUMES = "/api/v1/catalog/plumes/annotated"
SH_COLLECTIONS = "/api/v1/catalog/1.0.0/collections"
STREAM_PLOTS = int(os.environ.get("BENCH_HTTP_PLOTS", "5000"))
_names = itertools.count()


class Sim:
    def __init__(self, name: str, app: Any) -> None:
        self.name = name
        self.url = f"http://{name}.sim"
        self.transport = httpx.ASGITransport(app=app)
        self.admin = httpx.AsyncClient(transport=self.transport, base_url=self.url)

    async def faults(self, **faults: Any) -> None:
        (await self.admin.delete("/_sim/log")).raise_for_status()
        (await self.admin.post("/_sim/faults", json=faults)).raise_for_status()

    async def gap(self, path: str) -> float:
        times = [e["ts"] for e in (await self.admin.get("/_sim/log")).json() if path in e["path"]]
        return times[1] - times[0]

    def client(self, auth: Any = None, **policy: Any) -> UpstreamClient:
        defaults: dict[str, Any] = {"backoff_initial": 0.05, "cache_ttl": 0}
        return UpstreamClient(f"{self.name}-bench{next(_names)}", self.url, auth=auth,
                              policy=HttpPolicy(**{**defaults, **policy}), transport=self.transport)


async def retry_waits() -> None:
    cm = Sim("carbonmapper", carbonmapper.create_app(credentials=specs()["carbonmapper"].credentials))
    await cm.faults(status=429, count=1, retry_after=1, retry_after_unit="s", path=CM_PLUMES)
    await cm.client().get_json(CM_PLUMES, params={"limit": 1})
    print(f"Retry-After: 1 (seconds, CarbonMapper)        waited {await cm.gap(CM_PLUMES):6.3f} s  (asked 1 s)")

    spec = specs()["sentinelhub"]
    sh = Sim("sentinelhub", sentinelhub.create_app(credentials=spec.credentials))
    auth = ClientCredentials(sh.url + spec.aux_paths["token_url"], spec.credentials["client_id"],
                             spec.credentials["client_secret"])
    client = sh.client(auth=auth, retry_after_unit="ms")
    await client.get_json(SH_COLLECTIONS)  # the token first: its call is not part of the gap
    await sh.faults(status=429, count=1, retry_after=600, retry_after_unit="ms", path=SH_COLLECTIONS)
    await client.get_json(SH_COLLECTIONS)
    print(f"Retry-After: 600 (milliseconds, Sentinel Hub) waited {await sh.gap(SH_COLLECTIONS):6.3f} s  (asked 0.6 s)")

    await cm.faults(status=503, count=1, path=CM_PLUMES)
    await cm.client().get_json(CM_PLUMES, params={"limit": 1})
    print(f"503 without Retry-After (backoff 50 ms)       waited {await cm.gap(CM_PLUMES):6.3f} s")


async def stream_rate() -> None:
    token = specs()["epoch"].credentials["token"]
    sim = Sim("epoch", epoch.create_app(credentials={"token": token}, plots=STREAM_PLOTS))
    client = sim.client(auth=StaticBearer(token))
    started, size = time.perf_counter(), 0
    async with client.stream("GET", epoch.PATH, params={"limit": str(STREAM_PLOTS)}) as response:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
    seconds = time.perf_counter() - started
    print(f"Epoch stream of {STREAM_PLOTS} plots: {size / 1e6:.1f} MB in {seconds:.2f} s "
          f"({size / 1e6 / seconds:.1f} MB/s, simulator included)")


def main() -> None:
    asyncio.run(retry_waits())
    asyncio.run(stream_rate())


if __name__ == "__main__":
    main()
