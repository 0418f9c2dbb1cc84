"""The error documents both faces answer with: OGC exception JSON or STAC API error JSON.

One builder for the root app's error boundary and the jobs face (which must not import the app back).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from geofed import errors


def error_response(exc: errors.GeofedError, stac: bool = False) -> JSONResponse:
    """OGC exception JSON (`type`/`title`/`status`/`detail` + pygeoapi's `code`/`description`) or STAC error JSON."""
    if stac:
        body: dict[str, Any] = exc.to_dict()
    else:
        body = {"type": exc.code, "title": exc.code, "status": exc.status, "detail": exc.message, **exc.to_dict()}
    if exc.upstream:
        body["upstream"] = exc.upstream
    return JSONResponse(body, status_code=exc.status)
