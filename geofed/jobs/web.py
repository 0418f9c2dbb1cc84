"""The jobs face: routes placed before pygeoapi's mount, the API-key guard and the poller's lifespan.

`geofed.app` calls `extension(settings)` after importing pygeoapi, so the manager here is the very instance
pygeoapi executes processes with. geofed answers `/jobs*` itself: pygeoapi 0.24 ignores the `processID` and
`status` filters, cannot scope jobs to a caller, answers DELETE with a 500 on Starlette, and does not know job
result files. Execution stays pygeoapi's (mode negotiation, 201 + Location); geofed only runs it with the
caller in context. HTML views are pygeoapi's, fed by the same manager.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from geofed import errors
from geofed.jobs.access import CALLER, ApiKeyGuard, Caller, KeyRing, caller_of
from geofed.jobs.engine import JobEngine
from geofed.jobs.manager import GeofedManager
from geofed.jobs.poller import Poller
from geofed.jobs.store import STATUSES, JobRecord, iso
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)

REL_RESULTS = "http://www.opengis.net/def/rel/ogc/1.0/results"
REL_STATUS = "http://www.opengis.net/def/rel/ogc/1.0/job-list"


class NoSuchJob(errors.NotFound):
    code = "NoSuchJob"


class ResultNotReady(errors.NotFound):
    code = "ResultNotReady"


def _error(exc: errors.GeofedError) -> Response:
    from geofed.app import error_response  # the root app's OGC exception JSON

    return error_response(exc)


def _wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f is not None:
        return f.lower() == "html"
    return "text/html" in request.headers.get("accept", "")


def _protected_processes(manager: GeofedManager) -> frozenset[str]:
    """Ids of the processes that spend upstream credits: their class says `requires_api_key = True`, or the
    operator says so in the resource (`requires_api_key: true` next to `processor:` in the YAML)."""
    import importlib

    out = set()
    for pid, conf in manager.processes.items():
        if conf.get("requires_api_key"):
            out.add(pid)
            continue
        dotted = str(conf.get("processor", {}).get("name", ""))
        module_name, _, cls_name = dotted.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError, ValueError):
            LOGGER.warning("process %s: cannot load %s to read requires_api_key", pid, dotted)
            continue
        if getattr(cls, "requires_api_key", False):
            out.add(pid)
    return frozenset(out)


class JobsFace:
    def __init__(self, settings: Settings, manager: GeofedManager, pygeoapi_app: Any) -> None:
        self.settings = settings
        self.manager = manager
        self.pa = pygeoapi_app
        self.engine = JobEngine(manager)
        limits = pygeoapi_app.CONFIG["server"].get("limits", {})
        self.default_limit = int(limits.get("default_items", 10))
        self.max_limit = int(limits.get("max_items", 1000))

    @property
    def base(self) -> str:
        return self.settings.public_url

    # ------------------------------------------------------------------ helpers
    async def _pygeoapi(self, request: Request, fn: Callable[..., Any], *args: Any) -> Response:
        """Runs a pygeoapi API function in a worker thread *with* the caller in context (pygeoapi's own
        Starlette glue uses `run_in_executor`, which drops context variables)."""
        from pygeoapi.api import APIRequest

        api = self.pa.api_
        api_request = await APIRequest.from_starlette(request, api.locales)
        if not api_request.is_valid():
            headers, status, content = api.get_format_exception(api_request)
        else:
            CALLER.set(caller_of(request.scope))
            loop = asyncio.get_running_loop()
            headers, status, content = await asyncio.to_thread(
                self.pa.call_api_threadsafe, loop, fn, api, api_request, *args
            )
        return self.pa._to_response(headers, status, content)

    async def _visible(self, request: Request, job_id: str) -> JobRecord:
        job = await self.engine.db(self.manager.store.get, job_id)
        if job is None or not caller_of(request.scope).may_see(job.owner):
            raise NoSuchJob(f"no job {job_id}")
        return job

    def status_doc(self, job: JobRecord) -> dict[str, Any]:
        url = f"{self.base}/jobs/{job.id}"
        links = [
            {"href": url, "rel": "self", "type": "application/json", "title": "this job status"},
            {"href": f"{url}?f=html", "rel": "alternate", "type": "text/html", "title": "this job status as HTML"},
            {"href": f"{self.base}/jobs", "rel": "up", "type": "application/json", "title": "the job list"},
        ]
        if job.status == "successful":
            links.append({"href": f"{url}/results", "rel": REL_RESULTS, "type": "application/json",
                          "title": f"results of job {job.id}"})
        return {
            "type": "process",
            "jobID": job.id,
            "processID": job.process_id,
            "status": job.status,
            "message": job.message,
            "progress": job.progress,
            "created": iso(job.created),
            "started": iso(job.started),
            "finished": iso(job.finished),
            "updated": iso(job.updated),
            "links": links,
        }

    # ------------------------------------------------------------------ routes
    async def execute(self, request: Request) -> Response:
        from pygeoapi.api import processes as processes_api

        process_id = request.path_params["process_id"]
        if self._asks_to_wait(request) and not self._runs_sync(process_id):
            # pygeoapi would quietly run it asynchronously; geofed says so instead of answering a job to a
            # client that asked to wait for the result
            return _error(errors.InvalidParameter(
                f"process {process_id} runs asynchronously only (jobControlOptions: async-execute): send the "
                "request without 'Prefer: wait' (or with 'Prefer: respond-async') and follow the job's status link",
                parameter="Prefer",
            ))
        return await self._pygeoapi(request, processes_api.execute_process, process_id)

    @staticmethod
    def _asks_to_wait(request: Request) -> bool:
        """RFC 7240 `Prefer: wait` / `wait=N` (pygeoapi's and OWSLib's way of asking for sync execution)."""
        prefer = request.headers.get("prefer", "")
        tokens = [t.strip().split("=")[0].strip().lower() for t in prefer.split(",") for t in t.split(";")]
        return "wait" in tokens or "respond-sync" in tokens

    def _runs_sync(self, process_id: str) -> bool:
        conf = self.manager.processes.get(process_id)
        if conf is None:
            return True  # unknown process: pygeoapi answers its own 404
        try:
            processor = self.manager.get_processor(process_id)
        except Exception:  # noqa: BLE001 - pygeoapi reports a broken plugin itself
            return True
        return "sync-execute" in processor.metadata.get("jobControlOptions", ["sync-execute"])

    async def list_jobs(self, request: Request) -> Response:
        if _wants_html(request):
            from pygeoapi.api import processes as processes_api

            return await self._pygeoapi(request, processes_api.get_jobs)
        try:
            limit, offset, process_ids, statuses = self._list_params(request)
        except errors.InvalidParameter as exc:
            return _error(exc)
        caller: Caller = caller_of(request.scope)
        jobs, matched = await self.engine.db(
            self.manager.store.list, owner=caller.owner_filter, process_ids=process_ids, statuses=statuses,
            limit=limit, offset=offset,
        )
        query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "f")]
        qs = f"&{urlencode(query)}" if query else ""
        url = f"{self.base}/jobs"
        links = [{"href": f"{url}?offset={offset}{qs}", "rel": "self", "type": "application/json",
                  "title": "this page of jobs"}]
        if offset + len(jobs) < matched:
            links.append({"href": f"{url}?offset={offset + limit}{qs}", "rel": "next", "type": "application/json",
                          "title": "next page of jobs"})
        if offset > 0:
            links.append({"href": f"{url}?offset={max(0, offset - limit)}{qs}", "rel": "prev",
                          "type": "application/json", "title": "previous page of jobs"})
        body = {"jobs": [self.status_doc(j) for j in jobs], "links": links, "numberMatched": matched,
                "numberReturned": len(jobs)}
        return JSONResponse(body)

    def _list_params(self, request: Request) -> tuple[int, int, list[str], list[str]]:
        params = request.query_params

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = params.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise errors.InvalidParameter(f"{name} must be an integer", parameter=name) from None
            if not low <= value <= high:
                raise errors.InvalidParameter(f"{name} must be between {low} and {high}", parameter=name)
            return value

        limit = integer("limit", self.default_limit, 1, self.max_limit)
        offset = integer("offset", 0, 0, 10**9)

        def many(name: str) -> list[str]:
            return [v.strip() for raw in params.getlist(name) for v in raw.split(",") if v.strip()]

        process_ids = many("processID")
        statuses = many("status")
        for status in statuses:
            if status not in STATUSES:
                raise errors.InvalidParameter(
                    f"status {status!r} is not one of {', '.join(STATUSES)}", parameter="status"
                )
        return limit, offset, process_ids, statuses

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await self._visible(request, job_id)
            if request.method == "DELETE":
                job = await self.engine.dismiss(job)
                return JSONResponse(self.status_doc(job))
            if _wants_html(request):
                from pygeoapi.api import processes as processes_api

                await self.engine.refresh(job)
                return await self._pygeoapi(request, processes_api.get_jobs, job_id)
            job = await self.engine.refresh(job)
        except errors.GeofedError as exc:
            return _error(exc)
        return JSONResponse(self.status_doc(job))

    async def results(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await self.engine.refresh(await self._visible(request, job_id))
            self._check_results(job)
            mimetype, payload = await self.engine.results(job)
        except errors.GeofedError as exc:
            return _error(exc)
        return Response(payload, media_type=mimetype)

    @staticmethod
    def _check_results(job: JobRecord) -> None:
        if job.status in ("accepted", "running"):
            raise ResultNotReady(f"job {job.id} is {job.status}; its results are not ready yet")
        if job.status == "dismissed":
            raise NoSuchJob(f"job {job.id} was dismissed; its results are gone")
        if job.status == "failed":
            error = job.error or {}
            exc = errors.GeofedError(f"job {job.id} failed: {error.get('detail') or job.message}")
            exc.status = int(error.get("status") or 502)
            exc.code = str(error.get("code") or "JobFailed")
            raise exc

    async def result_file(self, request: Request) -> Response:
        job_id, file_id = request.path_params["job_id"], request.path_params["file_id"]
        try:
            job = await self._visible(request, job_id)
            self._check_results(job)
            media_type, chunks, headers = await self.engine.open_file(job, file_id)
            first = await anext(chunks, b"")  # upstream errors before the first byte still answer 4xx/5xx
        except errors.GeofedError as exc:
            return _error(exc)

        async def body() -> AsyncIterator[bytes]:
            try:
                if first:
                    yield first
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]

        return StreamingResponse(body(), media_type=media_type, headers=headers)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/processes/{process_id}/execution", self.execute, methods=["POST"]),
            Route("/jobs", self.list_jobs, methods=["GET"]),
            Route("/jobs/{job_id}", self.job, methods=["GET", "DELETE"]),
            Route("/jobs/{job_id}/results", self.results, methods=["GET"]),
            Route("/jobs/{job_id}/results/files/{file_id}", self.result_file, methods=["GET"]),
        ]


def extension(settings: Settings) -> dict[str, Any]:
    import pygeoapi.starlette_app as pygeoapi_app

    manager = pygeoapi_app.api_.manager
    if not isinstance(manager, GeofedManager):
        LOGGER.warning("server.manager is %s, not geofed's: jobs are pygeoapi's stock ones", manager.name)
        return {}
    face = JobsFace(settings, manager, pygeoapi_app)
    keys = KeyRing(settings.api_key_list())
    protected = _protected_processes(manager)
    if protected and not keys.enabled:
        LOGGER.warning("GEOFED_API_KEYS is not set: anyone may run the credit-spending processes %s",
                       ", ".join(sorted(protected)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(lambda: manager.store)  # open (and migrate) the store before the first request
        poller = Poller(face.engine, concurrency=int(manager.poll_concurrency))
        task = asyncio.create_task(poller.run(), name="geofed-job-poller")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await poller.stop()
            # polls cut short leave leases: hand the jobs to the other replicas (or our next start) at once
            await asyncio.to_thread(manager.store.release_owner, face.engine.owner)

    return {
        "routes": face.routes(),
        "middleware": [Middleware(ApiKeyGuard, keys=keys, protected=lambda: protected)],
        "lifespan": lifespan,
    }
