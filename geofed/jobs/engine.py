"""What happens to a job after its submission: advance it from the upstream, serve its results, dismiss it.

Runs on the server's main event loop. Store calls are blocking (sqlite3 / psycopg pool) and go to worker threads;
process coroutines run on geofed's upstream loop (`run_async`), where the shared `UpstreamClient`s live.
Used by the background poller, by the web routes (a client reading a stale job refreshes it at once) and by the
manager's fallback delete.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from pygeoapi.process.base import UnknownProcessError

from geofed import errors
from geofed.http.loop import run_async
from geofed.jobs.protocol import JobContext, JobProgress, UpstreamJobProcess
from geofed.jobs.store import ACTIVE, JobRecord, JobStore
from geofed.settings import get_settings

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS = 120.0  # longer than one upstream call with its retries; a dead poller's lease expires after it
MAX_BACKOFF = 300.0
MIN_INTERVAL = 0.2


def instance_id() -> str:
    """Stable across restarts of one server (host + port), distinct between replicas: it owns leases and local
    jobs, so a restarted server takes its jobs back at once instead of waiting for its old leases to expire."""
    import socket

    return f"{socket.gethostname()}:{get_settings().port}"


class JobEngine:
    """Advances, reads and dismisses the jobs of `manager` (the `GeofedManager`: its store and processors)."""

    def __init__(self, manager: Any, owner: str | None = None) -> None:
        self.manager = manager
        self.owner = owner or instance_id()
        self.interval = float(manager.poll_interval)

    @property
    def store(self) -> JobStore:
        return self.manager.store

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def process(self, job: JobRecord) -> UpstreamJobProcess | None:
        try:
            p = self.manager.get_processor(job.process_id)
        except UnknownProcessError:
            return None
        return p if isinstance(p, UpstreamJobProcess) else None

    def context(self, job: JobRecord) -> JobContext:
        return JobContext(job.id, f"{get_settings().public_url}/jobs/{job.id}/results", job.owner)

    # ------------------------------------------------------------------ advancing
    async def refresh(self, job: JobRecord) -> JobRecord:
        """Recomputes a stale job's status from the upstream now (a client is reading it); returns the fresh row.
        Not stale (its next poll is still ahead, e.g. SpaceKnow's nextTry) or being polled elsewhere: as stored."""
        if job.kind != "upstream" or not job.active or job.handle is None or (job.next_poll or 0) > time.time():
            return job
        claimed = await self.db(self.store.claim, job.id, self.owner, time.time(), LEASE_SECONDS)
        if claimed is None:
            return job
        await self.advance(claimed)
        return await self.db(self.store.get, job.id) or job

    async def advance(self, job: JobRecord) -> None:
        """Polls the upstream once for a job this engine has leased and writes what it learned."""
        process = self.process(job)
        if process is None or job.handle is None:
            await self._finish(job, "failed", f"process {job.process_id} is no longer offered by this server")
            return
        try:
            progress = await run_async(process.poll(job.handle))
        except errors.UpstreamNotFound as exc:
            await self._finish(job, "failed", f"the upstream no longer knows this job: {exc.message}",
                               error=_error(exc))
            return
        except errors.GeofedError as exc:
            await self._backoff(job, exc.message)
            return
        except Exception:
            LOGGER.exception("polling job %s failed", job.id)
            await self._backoff(job, "internal error")
            return
        await self._apply(job, process, progress)

    async def _apply(self, job: JobRecord, process: UpstreamJobProcess, progress: JobProgress) -> None:
        now = time.time()
        handle = progress.handle or job.handle
        wait = progress.next_poll if progress.next_poll is not None else self.interval
        changes: dict[str, Any] = {
            "handle": handle,
            "poll_failures": 0,
            "lease_owner": None,
            "lease_until": None,
            "next_poll": now + max(wait, MIN_INTERVAL),
        }
        if progress.message:
            changes["message"] = progress.message
        if progress.progress is not None:
            changes["progress"] = max(0, min(100, int(progress.progress)))
        if progress.status != "accepted" and job.started is None:
            changes["started"] = now
        if progress.status == "successful":
            try:
                document = await run_async(process.results(handle, self.context(job)))
            except errors.GeofedError as exc:
                # done upstream, results not readable yet: stay running and try again later
                await self._backoff(job, f"collecting results: {exc.message}", changes)
                return
            changes.update(
                status="successful", finished=now, progress=100, mimetype="application/json",
                result=json.dumps(document).encode(), message=progress.message or "job complete",
            )
        elif progress.status in ("failed", "dismissed"):
            changes.update(status=progress.status, finished=now)
            if progress.status == "failed":
                message = progress.message or "the upstream reported a failure"
                changes["error"] = {"status": 502, "code": "UpstreamJobFailed", "detail": message}
        else:
            changes["status"] = progress.status
        # conditional: a job dismissed meanwhile (another request, another replica) stays dismissed
        if not await self.db(self.store.update, job.id, changes, if_status=ACTIVE):
            LOGGER.info("job %s changed while it was polled (now final); its poll result is dropped", job.id)

    async def _backoff(self, job: JobRecord, reason: str, extra: dict[str, Any] | None = None) -> None:
        failures = job.poll_failures + 1
        wait = min(self.interval * 2 ** min(failures, 10), MAX_BACKOFF)
        LOGGER.warning("job %s: %s; next poll in %.0f s", job.id, reason, wait)
        changes = {**(extra or {}), "poll_failures": failures, "next_poll": time.time() + wait,
                   "lease_owner": None, "lease_until": None}
        changes.pop("status", None)
        await self.db(self.store.update, job.id, changes, if_status=ACTIVE)

    async def _finish(self, job: JobRecord, status: str, message: str, error: dict[str, Any] | None = None) -> None:
        changes: dict[str, Any] = {"status": status, "finished": time.time(), "message": message,
                                   "lease_owner": None, "lease_until": None}
        if status == "failed":
            changes["error"] = error or {"status": 502, "code": "UpstreamJobFailed", "detail": message}
        await self.db(self.store.update, job.id, changes, if_status=ACTIVE)

    # ------------------------------------------------------------------ results
    async def results(self, job: JobRecord) -> tuple[str, bytes]:
        """The stored results of a successful job (computed from the upstream once when missing)."""
        if job.result is not None:
            return job.mimetype or "application/json", job.result
        process = self.process(job)
        if process is None or job.handle is None:
            raise errors.NotFound(f"the results of job {job.id} are no longer available")
        document = await run_async(process.results(job.handle, self.context(job)))
        payload = json.dumps(document).encode()
        await self.db(self.store.update, job.id, {"result": payload, "mimetype": "application/json"},
                      if_status=("successful",))
        return "application/json", payload

    async def open_file(self, job: JobRecord, file_id: str) -> tuple[str, AsyncIterator[bytes], dict[str, str]]:
        """(media type, bytes, headers): `filename` / `size` on the process's stream become Content-Disposition
        and Content-Length."""
        process = self.process(job)
        if process is None or job.handle is None:
            raise errors.NotFound(f"job {job.id} has no result files")
        media_type, chunks = await run_async(process.open_file(job.handle, file_id))
        headers: dict[str, str] = {}
        filename = getattr(chunks, "filename", None)
        if filename:
            safe = "".join(c for c in str(filename) if c.isprintable() and c not in '"\\')
            headers["Content-Disposition"] = f'attachment; filename="{safe}"'
        size = getattr(chunks, "size", None)
        if isinstance(size, int):
            headers["Content-Length"] = str(size)
        return media_type, _pull(chunks), headers

    # ------------------------------------------------------------------ dismissal
    async def dismiss(self, job: JobRecord) -> JobRecord:
        """Cancels (or deletes) the job upstream where the upstream can, then marks it dismissed and drops its
        stored results. An upstream that fails to cancel leaves the job as it was (the client may retry)."""
        if job.status == "dismissed":
            return job
        process = self.process(job)
        if process is not None and job.handle is not None:
            try:
                await run_async(process.cancel(job.handle))
            except errors.UpstreamNotFound:
                pass  # already gone upstream
        now = time.time()
        changes = {"status": "dismissed", "finished": job.finished or now, "message": "job dismissed",
                   "result": None, "lease_owner": None, "lease_until": None, "next_poll": None}
        # unconditional but for "dismissed": a poll that just wrote "successful" must not win over the client
        await self.db(self.store.update, job.id, changes, if_status=(*ACTIVE, "successful", "failed"))
        return await self.db(self.store.get, job.id) or job


def _error(exc: errors.GeofedError) -> dict[str, Any]:
    return {"status": exc.status, "code": exc.code, "detail": exc.message, "upstream": exc.upstream}


_DONE = object()


async def _pull(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Consumes an async iterator that lives on the upstream loop from the main loop, chunk by chunk (so the
    upstream body is never read further than the client takes); closing it closes the upstream stream."""

    async def step() -> Any:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return _DONE

    try:
        while True:
            chunk = await run_async(step())
            if chunk is _DONE:
                return
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await run_async(aclose())
