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
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from geofed import errors
from geofed.errordocs import error_response
from geofed.jobs.access import CALLER, ApiKeyGuard, Caller, KeyRing, caller_of
from geofed.jobs.documents import status_doc
from geofed.jobs.engine import JobEngine
from geofed.jobs.manager import GeofedManager
from geofed.jobs.poller import SUBMIT_GRACE, Poller
from geofed.jobs.store import STATUSES, JobRecord
from geofed.settings import Settings

LOGGER = logging.getLogger(__name__)


class NoSuchJob(errors.NotFound):
    code = "NoSuchJob"


class ResultNotReady(errors.NotFound):
    code = "ResultNotReady"


def _error(exc: errors.GeofedError) -> Response:
    return error_response(exc)


def _wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f is not None:
        return f.lower() == "html"
    return "text/html" in request.headers.get("accept", "")


def _protected_processes(manager: GeofedManager, settings: Settings) -> frozenset[str]:
    """Ids of the processes that spend upstream credits: their class says `requires_api_key = True`, or the
    operator lists them in `GEOFED_API_KEY_PROCESSES` (comma-separated process ids)."""
    import importlib

    listed = {p.strip() for p in str(getattr(settings, "api_key_processes", None) or "").split(",") if p.strip()}
    out = set()
    for pid, conf in manager.processes.items():
        if pid in listed or conf.get("requires_api_key"):
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
    unknown = listed - set(manager.processes)
    if unknown:
        LOGGER.warning("GEOFED_API_KEY_PROCESSES names processes this server does not offer: %s",
                       ", ".join(sorted(unknown)))
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

    # ------------------------------------------------------------------ routes
    async def execute(self, request: Request) -> Response:
        from pygeoapi.api import processes as processes_api

        process_id = request.path_params["process_id"]
        modes = self._modes(process_id)
        if modes is not None and self._asks_to_wait(request) and "sync-execute" not in modes:
            # pygeoapi would quietly run it asynchronously; geofed says so instead of answering a job to a
            # client that asked to wait for the result
            return _error(errors.InvalidParameter(
                f"process {process_id} runs asynchronously only (jobControlOptions: async-execute): send the "
                "request without 'Prefer: wait' (or with 'Prefer: respond-async') and follow the job's status link",
                parameter="Prefer",
            ))
        if modes is not None and self._asks_async(request) and "async-execute" not in modes:
            # pygeoapi would quietly run it synchronously (or fail trying to run it as a job)
            return _error(errors.InvalidParameter(
                f"process {process_id} runs synchronously only (jobControlOptions: sync-execute): send the "
                "request without 'Prefer: respond-async'; the answer carries the result",
                parameter="Prefer",
            ))
        return await self._pygeoapi(request, processes_api.execute_process, process_id)

    @staticmethod
    def _prefer(request: Request) -> list[str]:
        prefer = request.headers.get("prefer", "")
        return [t.strip().split("=")[0].strip().lower() for t in prefer.split(",") for t in t.split(";")]

    def _asks_to_wait(self, request: Request) -> bool:
        """RFC 7240 `Prefer: wait` / `wait=N` (pygeoapi's and OWSLib's way of asking for sync execution)."""
        tokens = self._prefer(request)
        return "wait" in tokens or "respond-sync" in tokens

    def _asks_async(self, request: Request) -> bool:
        return "respond-async" in self._prefer(request)

    def _modes(self, process_id: str) -> list[str] | None:
        """The process's jobControlOptions; None when pygeoapi should answer itself (unknown or broken process)."""
        if process_id not in self.manager.processes:
            return None
        try:
            processor = self.manager.get_processor(process_id)
        except Exception:  # noqa: BLE001 - pygeoapi reports a broken plugin itself
            return None
        return list(processor.metadata.get("jobControlOptions") or ["sync-execute"])

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
        body = {"jobs": [status_doc(j, self.base) for j in jobs], "links": links, "numberMatched": matched,
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
                return JSONResponse(status_doc(job, self.base))
            if _wants_html(request):
                from pygeoapi.api import processes as processes_api

                await self.engine.refresh(job)
                return await self._pygeoapi(request, processes_api.get_jobs, job_id)
            job = await self.engine.refresh(job)
        except errors.GeofedError as exc:
            return _error(exc)
        return JSONResponse(status_doc(job, self.base))

    async def results(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            job = await self.engine.refresh(await self._visible(request, job_id))
            self._check_results(job)
            mimetype, payload = await self.engine.results(job)
        except errors.GeofedError as exc:
            return _error(exc)
        if request.query_params.get("f") == "html" and (report := _html_output(mimetype, payload)):
            return RedirectResponse(report, status_code=303)  # the job's own HTML report, when it has one
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
    keys = KeyRing.from_settings(settings)
    protected = _protected_processes(manager, settings)
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
            # jobs running in this process's threads end with it: say so now rather than at the next start
            now = time.time()
            await asyncio.to_thread(manager.store.fail_orphans, now, now - SUBMIT_GRACE, face.engine.owner)
            # polls cut short leave leases: hand the jobs to the other replicas (or our next start) at once
            await asyncio.to_thread(manager.store.release_owner, face.engine.owner)

    return {
        "routes": face.routes(),
        "middleware": [Middleware(ApiKeyGuard, keys=keys, protected=lambda: protected)],
        "lifespan": lifespan,
    }


def _html_output(mimetype: str, payload: Any) -> str | None:
    """The href of the first HTML output of a JSON results document (e.g. the emissions inventory's report)."""
    if "json" not in mimetype:
        return None
    try:
        document = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError):
        return None
    outputs = document.values() if isinstance(document, dict) else ()
    for output in outputs:
        if isinstance(output, dict) and str(output.get("type", "")).startswith("text/html") and output.get("href"):
            return str(output["href"])
    return None
