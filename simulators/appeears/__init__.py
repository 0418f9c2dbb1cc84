"""NASA AppEEARS API simulator (contract: ../shared/upstreams/docs/appeears-api.txt).

Serves login/logout (HTTP Basic → Bearer, 403 once expired), the product catalog with ETag/Last-Modified
revalidation, `/spatial/proj`, tasks (JSON body and/or query string; the query string wins), task status
(303 when done), bundles and streamed bundle files whose sha256 is right.

Tasks move pending → processing → done on the clock: `pending_seconds`, then `task_seconds` of processing
through the five documented steps. A task whose dates lie before a product's temporal extent ends in `error`
(the doc is silent on when AppEEARS rejects such dates; here the task fails while processing, as a real
extraction that finds no granules does). Where the doc is silent we pick one behaviour, configurable at
`create_app(**config)` or at run time through `POST /_sim/config`:
- `download_redirect` (default false): `/bundle/{id}/{file}` answers 302 to a storage URL, as `curl --location`
  in the doc hints;
- a missing Authorization header answers 401, an unknown or expired token 403 (the documented expiry signal);
- `/status/{id}` of a task in `error` answers 200 with `"status": "error"`;
- `submit_answer`: how `POST /task` answers 202. "location" (default) is the doc's sample: the task id only in
  `Location: /status/{id}`, `Content-Type: text/html`, `Content-Length: 0`; "json" adds the body
  `{"task_id", "status"}`; "none" (a fault) gives neither, although the task exists;
- `unavailable_layers` (["PRODUCT/LAYER", ...]): layers the catalog marks `"Available": false`; a task naming one is
  refused (400).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from base64 import b64decode
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from simulators.appeears.catalog import PRODUCTS, PROJECTIONS, layer_records, product_record
from simulators.appeears.tasks import bundle_files, merge_query, validate
from simulators.framework import SimulatorState, chunked, create_simulator_app

STEPS = ("Initializing", "Downloading", "Generating Files", "Extracting Stats", "Finalizing")
STEP_WEIGHTS = (5, 15, 45, 20, 15)  # share of the summary each step carries (sums to 100)
LAST_MODIFIED = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
CONTENT_TYPES = {"tif": "image/tiff", "nc": "application/x-netcdf", "csv": "text/csv", "json": "application/json",
                 "xml": "application/xml", "txt": "text/plain"}
_DEFAULTS: dict[str, Any] = {"task_seconds": 3.0, "pending_seconds": 0.5, "download_redirect": False,
                             "submit_answer": "location", "unavailable_layers": []}


def _message(text: str, status: int) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)


def _now_naive() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass
class Task:
    task_id: str
    user_id: str
    body: dict[str, Any]
    submitted: float
    created: str
    error: str | None = None  # the message the task will fail with (decided at submit)
    files: list[dict[str, Any]] = field(default_factory=list)
    content: dict[str, bytes] = field(default_factory=dict)


class AppeearsSim:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.tasks: dict[str, Task] = {}

    # ------------------------------------------------------------------ helpers
    def cfg(self, key: str) -> Any:
        return self.state.config[key]

    def user(self, request: Request) -> tuple[str | None, Response | None]:
        if not request.headers.get("authorization"):
            return None, _message("The server could not verify that you are authorized to access the URL "
                                  "requested.", 401)
        token = self.state.tokens.check_request(request)
        if token is None:  # documented expiry signal
            return None, _message("You don't have the permission to access the requested resource. It is either "
                                  "read-protected or not readable by the server.", 403)
        return token.subject, None

    def status_of(self, task: Task) -> tuple[str, int]:
        """(status, summary %) from the clock."""
        elapsed = time.time() - task.submitted - float(self.cfg("pending_seconds"))
        if elapsed < 0:
            return "pending", 0
        pct = min(100, int(100 * elapsed / max(float(self.cfg("task_seconds")), 0.001)))
        if pct >= 100:
            return ("error", 45) if task.error else ("done", 100)
        return "processing", pct

    def progress(self, summary: int) -> dict[str, Any]:
        details, floor = [], 0
        for step, (desc, weight) in enumerate(zip(STEPS, STEP_WEIGHTS, strict=True), start=1):
            done = min(max(summary - floor, 0), weight)
            details.append({"step": step, "desc": desc, "pct_complete": round(100 * done / weight)})
            floor += weight
        return {"summary": summary, "details": details}

    def task_json(self, task: Task) -> dict[str, Any]:
        status, _ = self.status_of(task)
        return {"attempts": 1, "created": task.created, "error": task.error if status == "error" else None,
                "params": task.body["params"], "retry_at": None, "status": status, "svc_version": "3.65",
                "task_id": task.task_id, "task_name": task.body["task_name"], "task_type": task.body["task_type"],
                "updated": _now_naive(), "user_id": task.user_id, "web_version": "3.65"}

    def owned(self, request: Request) -> tuple[Task | None, Response | None]:
        """The caller's task named in the path, or the answer AppEEARS gives (401 unauthenticated, 404 not theirs)."""
        user, denied = self.user(request)
        if denied:
            return None, denied
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or task.user_id != user:
            return None, _message(f"Task '{request.path_params['task_id']}' could not be found", 404)
        return task, None

    # ------------------------------------------------------------------ auth
    async def login(self, request: Request) -> Response:
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = b64decode(raw).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
        except ValueError:
            user, password = "", ""
        creds = self.state.credentials
        if user != creds.get("username") or password != creds.get("password"):
            return _message("The server could not verify that you are authorized to access the URL requested.  You "
                            "either supplied the wrong credentials (e.g. a bad password), or your browser doesn't "
                            "understand how to supply the credentials required.", 401)
        token = self.state.tokens.issue(user if "@" in user else f"{user}@example.com", prefix="aeq")
        expiration = dt.datetime.fromtimestamp(token.expires_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return JSONResponse({"token_type": "Bearer", "token": token.value, "expiration": expiration})

    async def logout(self, request: Request) -> Response:
        _, denied = self.user(request)
        if denied:
            return denied
        self.state.tokens.revoke(request.headers["authorization"].partition(" ")[2].strip())
        return Response(status_code=204)

    # ------------------------------------------------------------------ catalog
    def conditional(self, request: Request, payload: Any) -> Response:
        body = json.dumps(payload).encode()
        etag = f'"lpdms-{hashlib.sha1(body).hexdigest()[:24]}"'
        headers = {"ETag": etag, "Last-Modified": format_datetime(LAST_MODIFIED, usegmt=True),
                   "Cache-Control": "private, no-transform, must-revalidate, max-age=0",
                   "Expires": format_datetime(dt.datetime.now(dt.UTC), usegmt=True)}
        inm = request.headers.get("if-none-match")
        ims = request.headers.get("if-modified-since")
        if inm is not None:
            if etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
                return Response(status_code=304, headers=headers)
        elif ims:
            try:
                if parsedate_to_datetime(ims) >= LAST_MODIFIED:
                    return Response(status_code=304, headers=headers)
            except (TypeError, ValueError):
                pass
        return Response(body, media_type="application/json", headers=headers)

    @staticmethod
    def page(request: Request, rows: list[Any]) -> list[Any] | Response:
        try:
            offset = int(request.query_params.get("offset", 0))
            limit = int(request.query_params["limit"]) if "limit" in request.query_params else None
        except ValueError:
            return _message("'limit' and 'offset' must be integers", 400)
        if offset < 0 or (limit is not None and limit < 1):
            return _message("'limit' must be positive and 'offset' not negative", 400)
        return rows[offset:] if limit is None else rows[offset:offset + limit]

    async def products(self, request: Request) -> Response:
        rows = self.page(request, [product_record(p) for p in PRODUCTS])
        return rows if isinstance(rows, Response) else self.conditional(request, rows)

    async def product(self, request: Request) -> Response:
        pid = request.path_params["product_id"]
        if pid not in PRODUCTS:
            return _message(f"Product '{pid}' could not be found", 404)
        return self.conditional(request, layer_records(pid, self.cfg("unavailable_layers")))

    async def projections(self, request: Request) -> Response:
        return self.conditional(request, PROJECTIONS)

    # ------------------------------------------------------------------ tasks
    async def submit(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _message("The request body is not valid JSON", 400)
        if not isinstance(body, dict):
            return _message("The task must be a JSON object", 400)
        try:
            body = merge_query(body, request.query_params.multi_items())
        except (ValueError, TypeError):
            return _message("Malformed query parameter: values must be comma-separated numbers", 400)
        problem, error = validate(body, {p["Name"] for p in PROJECTIONS}, self.cfg("unavailable_layers"))
        if problem:
            return _message(problem, 400)
        task_id = str(uuid.uuid4())
        assert user is not None
        self.tasks[task_id] = Task(task_id, user, body, time.time(), _now_naive(), error)
        answer = self.cfg("submit_answer")
        if answer == "json":
            return JSONResponse({"task_id": task_id, "status": "pending"}, status_code=202,
                                headers={"Location": f"/status/{task_id}"})
        headers = {"Location": f"/status/{task_id}"} if answer == "location" else {}
        return Response(b"", status_code=202, media_type="text/html; charset=utf-8", headers=headers)

    async def list_tasks(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        rows = [self.task_json(t) for t in sorted(self.tasks.values(), key=lambda t: -t.submitted)
                if t.user_id == user]
        for key in ("status", "task_type"):
            if key in request.query_params:
                rows = [r for r in rows if r[key] == request.query_params[key]]
        page = self.page(request, rows)
        return page if isinstance(page, Response) else JSONResponse(page)

    async def task(self, request: Request) -> Response:
        task, denied = self.owned(request)
        if denied:
            return denied
        assert task is not None
        if request.method == "DELETE":
            del self.tasks[task.task_id]
            return Response(status_code=204)
        return JSONResponse(self.task_json(task))

    def status_json(self, task: Task) -> dict[str, Any]:
        status, summary = self.status_of(task)
        body = {"task_id": task.task_id, "user_id": task.user_id, "status_id": str(uuid.uuid5(
            uuid.NAMESPACE_URL, task.task_id)), "status_type": "task", "updated": _now_naive(),
            "progress": self.progress(summary)}
        if status == "error":
            body["status"] = "error"
        return body

    async def statuses(self, request: Request) -> Response:
        user, denied = self.user(request)
        if denied:
            return denied
        return JSONResponse([self.status_json(t) for t in self.tasks.values()
                             if t.user_id == user and self.status_of(t)[0] in ("pending", "processing")])

    async def status(self, request: Request) -> Response:
        task, denied = self.owned(request)
        if denied:
            return denied
        assert task is not None
        if self.status_of(task)[0] == "done":
            return JSONResponse({"task_id": task.task_id, "status": "done", "user_id": task.user_id,
                                 "updated": _now_naive(), "status_type": "task"}, status_code=303,
                                headers={"Location": f"/task/{task.task_id}"})
        return JSONResponse(self.status_json(task))

    # ------------------------------------------------------------------ bundles (public)
    def done_task(self, request: Request) -> Task | None:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or self.status_of(task)[0] != "done":
            return None
        if not task.files:
            for meta, content in bundle_files(task.body, self.state.rng(f"bundle:{task.task_id}")):
                task.files.append(meta)
                task.content[meta["file_id"]] = content
        return task

    async def bundle(self, request: Request) -> Response:
        task = self.done_task(request)
        if task is None:
            return _message(f"Bundle for task '{request.path_params['task_id']}' could not be found", 404)
        return JSONResponse({"task_id": task.task_id, "files": task.files, "created": task.created,
                             "updated": task.created, "bundle_type": task.body["task_type"]})

    async def download(self, request: Request) -> Response:
        task = self.done_task(request)
        file_id = request.path_params["file_id"]
        meta = next((f for f in task.files if f["file_id"] == file_id), None) if task else None
        if task is None or meta is None:
            return _message(f"File '{file_id}' could not be found", 404)
        if self.cfg("download_redirect") and "stored" not in request.query_params:
            return RedirectResponse(f"{request.url.replace(query='stored=1')}", status_code=302)
        content = task.content[file_id]
        name = meta["file_name"].replace("\\", "/").rsplit("/", 1)[-1]
        chunks = [content[i:i + 4096] for i in range(0, len(content), 4096)]
        return StreamingResponse(chunked(self.state, chunks, request.url.path),
                                 media_type=CONTENT_TYPES.get(meta["file_type"], "application/octet-stream"),
                                 headers={"Content-Disposition": f'attachment; filename="{name}"',
                                          "Content-Length": str(len(content))})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            self.state.config.update({k: v for k, v in (await request.json()).items() if k in _DEFAULTS})
        elif request.method == "DELETE":
            self.state.config.update(json.loads(json.dumps(self.state.config["defaults"])))
        return JSONResponse({k: self.state.config[k] for k in _DEFAULTS})


def create_app(credentials: dict[str, str], seed: int = 42, **config: Any) -> Starlette:
    """`config`: task_seconds, pending_seconds, download_redirect (defaults also from SIM_APPEEARS_* env)."""
    settings: dict[str, Any] = dict(_DEFAULTS)
    for key in ("task_seconds", "pending_seconds"):
        if f"SIM_APPEEARS_{key.upper()}" in os.environ:
            settings[key] = float(os.environ[f"SIM_APPEEARS_{key.upper()}"])
    settings.update({k: v for k, v in config.items() if k in _DEFAULTS})
    state = SimulatorState("appeears", seed=seed, credentials=credentials, token_ttl=48 * 3600,
                           config={**settings, "defaults": json.loads(json.dumps(settings))})
    sim = AppeearsSim(state)
    routes = [
        Route("/login", sim.login, methods=["POST"]),
        Route("/logout", sim.logout, methods=["POST"]),
        Route("/product", sim.products),
        Route("/product/{product_id}", sim.product),
        Route("/spatial/proj", sim.projections),
        Route("/task", sim.list_tasks, methods=["GET"]),
        Route("/task", sim.submit, methods=["POST"]),
        Route("/task/{task_id}", sim.task, methods=["GET", "DELETE"]),
        Route("/status", sim.statuses),
        Route("/status/{task_id}", sim.status),
        Route("/bundle/{task_id}", sim.bundle),
        Route("/bundle/{task_id}/{file_id}", sim.download),
        Route("/_sim/config", sim.config, methods=["GET", "POST", "DELETE"]),
    ]
    return create_simulator_app(state, routes)
