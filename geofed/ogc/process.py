"""Base for geofed's pygeoapi processors: upstream-backed, errors mapped to OGC statuses.

A process implements `async def run(self, data) -> tuple[str, Any]` (media type, output) and says in its
`jobControlOptions` how it may be executed; geofed answers 400 to a `Prefer` asking for a mode not listed:
- `sync-execute`: the request waits for `run` (raise `geofed.errors.InvalidParameter` for bad input: a refused
  sync request leaves no job behind);
- `async-execute` without the protocol below: `run` runs in a thread of the server as a job (it ends
  `successful` or `failed`; a server restart fails it, it is never left `accepted`);
- `async-execute` with `geofed.jobs.protocol.UpstreamJobProcess`: the work runs upstream, geofed keeps its handle
  and polls it (durable across restarts and replicas).
"""

from __future__ import annotations

from typing import Any

from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from geofed import errors
from geofed.http.loop import run_sync


def process_input(title: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    """One input of an OGC process description (a single value, optional unless `required`)."""
    return {"title": title, "description": description, "schema": schema, "minOccurs": 1 if required else 0,
            "maxOccurs": 1}


def processor_error(exc: errors.GeofedError) -> ProcessorExecuteError:
    err = ProcessorExecuteError(user_msg=exc.message)
    err.http_status_code = exc.status  # type: ignore[assignment]
    err.ogc_exception_code = exc.code
    return err


class UpstreamProcessor(BaseProcessor):
    async def run(self, data: dict[str, Any]) -> tuple[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def execute(self, data: dict[str, Any], outputs: dict[str, Any] | None = None) -> tuple[str, Any]:
        try:
            return run_sync(self.run(data or {}))
        except errors.GeofedError as exc:
            raise processor_error(exc) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}> {self.metadata.get('id')}"


class AsyncOnlyProcessor(UpstreamProcessor):
    """A process that only runs as a job (its work, and any credits, are spent upstream through geofed's job
    manager, which checks the API key): a synchronous execution is a 400 naming `Prefer`."""

    def execute(self, data: dict[str, Any], outputs: dict[str, Any] | None = None) -> tuple[str, Any]:
        raise processor_error(errors.InvalidParameter(
            f"process '{self.metadata.get('id')}' is asynchronous only: send the header 'Prefer: respond-async'",
            parameter="Prefer"))
