"""geofed's pygeoapi job manager (`server.manager.name: geofed.jobs.manager.GeofedManager`).

pygeoapi keeps its own execution flow (`BaseManager.execute_process`: mode negotiation, the 201 + Location
answer); this manager changes what happens underneath:

- every job is a row of the durable store (`geofed.jobs.store`), written before the response;
- an async execution of an upstream-backed process (`geofed.jobs.protocol.UpstreamJobProcess`) submits upstream,
  stores the upstream handle and returns at once — no thread waits for the upstream; the poller advances it;
- an async execution of any other process runs in a thread of this server ("local" job) under a lease it
  renews while it runs: a restart, or the lease running out after a crash, fails it honestly instead of leaving
  it `accepted` or `running` for ever;
- a sync execution refused for its input (a 4xx) leaves no job behind: nothing was run;
- results live in the store (not in `output_dir` files), so every replica can serve them and nothing is left on
  disk when a job is dismissed;
- errors keep their HTTP status (stock pygeoapi turns a sync 502 into a 400).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pygeoapi.process.base import (
    BaseProcessor,
    JobNotFoundError,
    JobResultNotFoundError,
    ProcessorExecuteError,
)
from pygeoapi.process.manager.base import BaseManager
from pygeoapi.util import JobStatus, RequestedResponse, Subscriber

from geofed import errors
from geofed.http.loop import run_sync
from geofed.jobs.access import CALLER
from geofed.jobs.documents import pygeoapi_job
from geofed.jobs.engine import JobEngine, instance_id
from geofed.jobs.protocol import JobContext, UpstreamJobProcess
from geofed.jobs.store import ACTIVE, LOCAL_LEASE, TABLE, JobRecord, JobStore, open_store
from geofed.ogc.process import processor_error
from geofed.ogc.workarounds import declared_metadata
from geofed.settings import get_settings

LOGGER = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 2.0
HEARTBEAT_SECONDS = LOCAL_LEASE / 4


def encode_output(outputs: Any) -> bytes:
    if isinstance(outputs, bytes):
        return outputs
    if isinstance(outputs, str):
        return outputs.encode()
    return json.dumps(outputs, default=str).encode()


class GeofedManager(BaseManager):
    def __init__(self, manager_def: dict[str, Any]) -> None:
        super().__init__(manager_def)
        self.is_async = True
        self.supports_subscribing = False  # callbacks would make the server call arbitrary hosts
        self.table = str(manager_def.get("table") or TABLE)
        self.poll_interval = float(manager_def.get("poll_interval") or DEFAULT_POLL_INTERVAL)
        self.poll_concurrency = int(manager_def.get("poll_concurrency") or 8)
        self._local = threading.local()

    def get_processor(self, process_id: str) -> BaseProcessor:
        processor = super().get_processor(process_id)
        processor.metadata = declared_metadata(processor.metadata)  # see geofed.ogc.workarounds
        return processor

    # pygeoapi keeps the current processor in `self.processor` on this one shared manager instance; concurrent
    # requests on worker threads would swap each other's processors. A per-thread attribute fixes that.
    @property
    def processor(self) -> BaseProcessor | None:
        return getattr(self._local, "processor", None)

    @processor.setter
    def processor(self, value: BaseProcessor | None) -> None:
        self._local.processor = value

    @property
    def store(self) -> JobStore:
        connection = str(self.connection)
        if connection == "GEOFED_DATABASE_URL":  # kept out of the rendered config file: it may hold a password
            url = get_settings().database_url
            if url is None:
                raise RuntimeError("server.manager.connection names GEOFED_DATABASE_URL, which is not set")
            connection = url.get_secret_value()
        return open_store(connection, self.table)

    # ------------------------------------------------------------------ BaseManager: records
    def get_jobs(self, status: Any = None, limit: int | None = None, offset: int | None = None) -> dict[str, Any]:
        caller = CALLER.get()
        statuses = [status.value if isinstance(status, JobStatus) else str(status)] if status else None
        jobs, matched = self.store.list(
            owner=caller.owner_filter, statuses=statuses, limit=limit or 10, offset=offset or 0
        )
        return {"jobs": [pygeoapi_job(j) for j in jobs], "numberMatched": matched}

    def add_job(self, job_metadata: dict[str, Any]) -> str:
        job_id = str(job_metadata["identifier"])
        # "local" until an upstream submission turns it into an upstream job; owned by this server meanwhile,
        # so a crash before the handle is stored cannot leave it accepted forever
        self.store.insert(
            JobRecord(
                id=job_id,
                process_id=str(job_metadata["process_id"]),
                status="accepted",
                kind="local",
                owner=CALLER.get().key_hash,
                progress=0,
                message="job accepted",
                lease_owner=instance_id(),
                lease_until=time.time() + LOCAL_LEASE,
            )
        )
        return job_id

    def update_job(self, job_id: str, update_dict: dict[str, Any]) -> bool:
        changes: dict[str, Any] = {}
        for key in ("status", "message", "progress", "mimetype"):
            if key in update_dict:
                changes[key] = update_dict[key]
        if update_dict.get("finished"):
            changes["finished"] = time.time()
        return self.store.update(job_id, changes)

    def get_job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job is None or not CALLER.get().may_see(job.owner):
            raise JobNotFoundError()
        return pygeoapi_job(job)

    def get_job_result(self, job_id: str) -> tuple[str, Any]:
        job = self.store.get(job_id)
        if job is None or not CALLER.get().may_see(job.owner):
            raise JobNotFoundError()
        if job.result is None:
            raise JobResultNotFoundError()
        mimetype = job.mimetype or "application/json"
        if mimetype == "application/json":
            return mimetype, json.loads(job.result)
        return mimetype, job.result

    def delete_job(self, job_id: str) -> bool:
        # geofed serves DELETE /jobs/{id} itself (geofed.jobs.web); this is pygeoapi's path, kept working
        import asyncio

        job = self.store.get(job_id)
        if job is None or not CALLER.get().may_see(job.owner):
            raise JobNotFoundError()
        asyncio.run(JobEngine(self).dismiss(job))
        return True

    # ------------------------------------------------------------------ BaseManager: execution
    def _execute_handler_async(
        self,
        p: BaseProcessor,
        job_id: str,
        data_dict: dict[str, Any],
        requested_outputs: dict[str, Any] | None = None,
        subscriber: Subscriber | None = None,
        requested_response: str | None = RequestedResponse.raw.value,
    ) -> tuple[str, None, JobStatus]:
        if isinstance(p, UpstreamJobProcess):
            self._submit(p, job_id, data_dict)
            return "application/json", None, JobStatus.accepted
        self.store.update(job_id, {"inputs": data_dict})
        args = (p, job_id, data_dict, requested_outputs, subscriber, requested_response)
        try:
            threading.Thread(target=self._run_local, args=args, daemon=True, name=f"geofed-job-{job_id}").start()
        except Exception as err:  # e.g. no thread can be started: the job must not stay accepted
            LOGGER.exception("could not start job %s", job_id)
            exc = errors.GeofedError("the job could not be started; see the server log")
            self._fail(job_id, exc)
            raise processor_error(exc) from err
        return "application/json", None, JobStatus.accepted

    def _submit(self, p: UpstreamJobProcess, job_id: str, data_dict: dict[str, Any]) -> None:
        caller = CALLER.get()
        ctx = JobContext(job_id, f"{get_settings().public_url}/jobs/{job_id}/results", caller.key_hash)
        self.store.update(
            job_id,
            {"kind": "upstream", "inputs": data_dict, "lease_owner": None, "lease_until": None,
             "message": "submitting upstream"},
        )
        try:
            handle = run_sync(p.submit(data_dict, ctx))
        except errors.GeofedError as exc:
            if exc.status < 500:  # refused before anything ran: no job was accepted
                self.store.delete(job_id)
            else:
                self._fail(job_id, exc)
            raise processor_error(exc) from None
        except Exception:
            LOGGER.exception("submitting job %s of %s failed", job_id, p.metadata.get("id"))
            exc = errors.GeofedError("the job could not be submitted; see the server log")
            self._fail(job_id, exc)
            raise processor_error(exc) from None
        stored = self.store.update(
            job_id,
            {"handle": handle, "next_poll": time.time() + min(self.poll_interval, 1.0), "message": "submitted"},
            if_status=ACTIVE,
        )
        if not stored:  # dismissed while we were submitting: do not leave the upstream work running
            LOGGER.info("job %s was dismissed during its submission; cancelling it upstream", job_id)
            try:
                run_sync(p.cancel(handle))
            except errors.GeofedError as exc:
                LOGGER.warning("could not cancel job %s upstream: %s", job_id, exc.message)

    def _fail(self, job_id: str, exc: errors.GeofedError) -> None:
        self.store.update(
            job_id,
            {"status": "failed", "finished": time.time(), "message": exc.message, "lease_owner": None,
             "lease_until": None,
             "error": {"status": exc.status, "code": exc.code, "detail": exc.message, "upstream": exc.upstream}},
        )

    @contextmanager
    def _heartbeat(self, job_id: str) -> Iterator[None]:
        """Renews the lease of a job running in this process until it ends (a crash lets the lease run out)."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    self.store.update(job_id, {"lease_until": time.time() + LOCAL_LEASE}, if_status=ACTIVE)
                except Exception:  # noqa: BLE001 - the store is down: the next beat tries again
                    LOGGER.warning("job %s: could not renew its lease", job_id)

        threading.Thread(target=beat, daemon=True, name=f"geofed-job-lease-{job_id}").start()
        try:
            yield
        finally:
            done.set()

    def _run_local(self, *args: Any) -> None:
        """An async job of a process that runs in this server: recorded as successful or failed, never raised."""
        try:
            self._run(*args, refused_leaves_job=True)
        except ProcessorExecuteError:
            pass  # recorded as failed; nobody waits for the exception
        except Exception:
            LOGGER.exception("local job %s failed", args[1])

    def _execute_handler_sync(
        self,
        p: BaseProcessor,
        job_id: str,
        data_dict: dict[str, Any],
        requested_outputs: dict[str, Any] | None = None,
        subscriber: Subscriber | None = None,
        requested_response: str | None = RequestedResponse.raw.value,
    ) -> tuple[str, Any, JobStatus]:
        """pygeoapi's sync execution: the process runs in this (worker) thread and its output is stored in the job
        row. A failure keeps its HTTP status (502 for an upstream failure, 400 for bad input); input refused with a
        4xx removes the job (nothing ran), other failures are recorded."""
        return self._run(p, job_id, data_dict, requested_outputs, subscriber, requested_response,
                         refused_leaves_job=False)

    def _run(
        self,
        p: BaseProcessor,
        job_id: str,
        data_dict: dict[str, Any],
        requested_outputs: dict[str, Any] | None,
        subscriber: Subscriber | None,
        requested_response: str | None,
        *,
        refused_leaves_job: bool,
    ) -> tuple[str, Any, JobStatus]:
        now = time.time()
        self.store.update(job_id, {"status": "running", "started": now, "message": "running", "progress": 10,
                                   "lease_owner": instance_id(), "lease_until": now + LOCAL_LEASE},
                          if_status=ACTIVE)
        extra = {"outputs": requested_outputs} if p.supports_outputs else {}
        try:
            with self._heartbeat(job_id):
                mimetype, outputs = p.execute(data_dict, **extra)
        except ProcessorExecuteError as err:
            status = int(getattr(err, "http_status_code", 500) or 500)
            message = str(err.message)
            if status < 500 and not refused_leaves_job:
                self.store.delete(job_id)
                raise
            self.store.update(
                job_id,
                {"status": "failed", "finished": time.time(), "message": message, "lease_owner": None,
                 "lease_until": None, "error": {"status": status, "code": err.ogc_exception_code, "detail": message}},
                if_status=ACTIVE,
            )
            raise
        except Exception as err:
            LOGGER.exception("process %s failed", p.metadata.get("id"))
            exc = errors.GeofedError("the process failed; see the server log")
            self._fail(job_id, exc)
            raise processor_error(exc) from err
        if isinstance(outputs, bytes) and outputs.isascii():
            outputs = outputs.decode("utf-8")
        if requested_response == RequestedResponse.document.value:
            outputs = {"outputs": [outputs]}
        self.store.update(
            job_id,
            {"status": "successful", "finished": time.time(), "progress": 100, "message": "job complete",
             "mimetype": mimetype, "result": encode_output(outputs), "lease_owner": None, "lease_until": None},
            if_status=ACTIVE,
        )
        return mimetype, outputs, JobStatus.successful

    def __repr__(self) -> str:
        return f"<GeofedManager> {self.table}"

