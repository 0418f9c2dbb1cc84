"""What an async (job) process offers the job manager.

An upstream-backed process does the heavy work upstream; geofed only keeps the upstream *handle* (a small
JSON object: AppEEARS task id, SpaceKnow pipeline id, ...) in the job record. The manager:

1. validates and submits: `handle = await process.submit(inputs, job)` — raise `geofed.errors.InvalidParameter`
   (→ 400) before anything is sent upstream when inputs are wrong; the job record (with the handle) is
   written before the 201 answer;
2. advances: `progress = await process.poll(handle)` from its background poller or when a client asks and the
   record is stale; `progress.handle`, when set, replaces the stored handle (multi-stage pipelines);
3. serves results: `await process.results(handle, job)` → the OGC results document (JSON-able), whose file
   hrefs point at geofed (`{job.results_url}/files/{file_id}`), never at the upstream;
4. streams a result file: `await process.open_file(handle, file_id)` → (media type, async byte iterator);
5. dismisses: `await process.cancel(handle)` deletes/cancels upstream where the upstream can.

Errors are `geofed.errors` classes: an `UpstreamNotFound` from `poll` fails the job (the upstream forgot it), other
upstream errors make the poller back off and retry; from `cancel`, `UpstreamNotFound` counts as cancelled.
A process that spends upstream credits sets the class attribute `requires_api_key = True` (or the operator adds
`requires_api_key: true` to its resource in the YAML): with `GEOFED_API_KEYS` set, executing it needs a key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

JobStatus = Literal["accepted", "running", "successful", "failed", "dismissed"]


@dataclass
class JobContext:
    job_id: str
    results_url: str  # public URL of /jobs/{job_id}/results (no trailing slash)
    api_key_hash: str | None = None


@dataclass
class JobProgress:
    status: JobStatus
    progress: int | None = None  # 0..100, from the upstream
    message: str | None = None
    next_poll: float | None = None  # seconds the upstream asks us to wait (SpaceKnow nextTry)
    handle: dict[str, Any] | None = None  # replaces the stored handle when set


@runtime_checkable
class UpstreamJobProcess(Protocol):
    async def submit(self, inputs: dict[str, Any], job: JobContext) -> dict[str, Any]: ...

    async def poll(self, handle: dict[str, Any]) -> JobProgress: ...

    async def results(self, handle: dict[str, Any], job: JobContext) -> dict[str, Any]: ...

    async def open_file(self, handle: dict[str, Any], file_id: str) -> tuple[str, AsyncIterator[bytes]]: ...

    async def cancel(self, handle: dict[str, Any]) -> None: ...
