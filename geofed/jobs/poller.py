"""Background polling: advances running upstream jobs without a client asking.

One poller per server process, started by the root app's lifespan. Each tick it leases the jobs that are due
(`next_poll` reached: the poll interval, the upstream's `nextTry`, or a backoff after errors and rate limits)
and polls at most `concurrency` of them at a time. Leases make several replicas share the work without polling
one job twice; because every job's schedule is in the store, a restarted server resumes every running job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from geofed.jobs.engine import LEASE_SECONDS, JobEngine
from geofed.jobs.store import JobRecord

LOGGER = logging.getLogger(__name__)

SUBMIT_GRACE = 300.0  # an upstream job without a handle this old was orphaned by a crash mid-submit
SWEEP_EVERY = 60.0


class Poller:
    def __init__(self, engine: JobEngine, concurrency: int = 8, tick: float = 0.5) -> None:
        self.engine = engine
        self.concurrency = max(1, concurrency)
        self.tick = tick
        self._running: set[asyncio.Task[None]] = set()

    async def resume(self) -> None:
        """On start: fail what a crash made hopeless, and take this server's jobs back at once."""
        store, now = self.engine.store, time.time()
        failed = await self.engine.db(store.fail_orphans, now, now - SUBMIT_GRACE, self.engine.owner)
        released = await self.engine.db(store.release_owner, self.engine.owner)
        if failed or released:
            LOGGER.info("jobs: %d orphaned jobs failed, %d resumed after restart", len(failed), released)

    async def run(self) -> None:
        await self.resume()
        last_sweep = time.monotonic()
        store = self.engine.store
        while True:
            try:
                free = self.concurrency - len(self._running)
                if free > 0:
                    claimed = await self.engine.db(
                        store.claim_due, self.engine.owner, time.time(), LEASE_SECONDS, free
                    )
                    for job in claimed:
                        task = asyncio.create_task(self._advance(job), name=f"geofed-job-{job.id}")
                        self._running.add(task)
                        task.add_done_callback(self._running.discard)
                if time.monotonic() - last_sweep > SWEEP_EVERY:
                    last_sweep = time.monotonic()
                    now = time.time()
                    await self.engine.db(store.fail_orphans, now, now - SUBMIT_GRACE)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is down: keep trying, the jobs are safe in it
                LOGGER.exception("job poller: store unavailable")
            await asyncio.sleep(self.tick)

    async def _advance(self, job: JobRecord) -> None:
        try:
            await self.engine.advance(job)
        except Exception:
            LOGGER.exception("job poller: advancing job %s failed", job.id)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
