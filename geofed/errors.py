"""One exception hierarchy for all of geofed; both faces map it to HTTP statuses.

Messages are written for the API client: they name the upstream or the parameter and never carry a
credential, a traceback or an upstream URL with a token in it.
"""

from __future__ import annotations


class GeofedError(Exception):
    """Base class. `status` is the HTTP status both faces answer with; `code` the OGC exception code."""

    status: int = 500
    code: str = "NoApplicableCode"

    def __init__(self, message: str, *, upstream: str | None = None, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream
        self.parameter = parameter

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "description": self.message}
        if self.upstream:
            body["upstream"] = self.upstream
        if self.parameter:
            body["parameter"] = self.parameter
        return body


class InvalidParameter(GeofedError):
    """The client's input is wrong (400). `parameter` names the offending parameter."""

    status = 400
    code = "InvalidParameterValue"


class NotFound(GeofedError):
    status = 404
    code = "NotFound"


class Unauthorized(GeofedError):
    status = 401
    code = "Unauthorized"


class Forbidden(GeofedError):
    status = 403
    code = "Forbidden"


class UpstreamError(GeofedError):
    """The upstream answered with an error or with something we cannot read (502)."""

    status = 502
    code = "UpstreamError"


class UpstreamRejected(UpstreamError):
    """The upstream refused the request as invalid (its 4xx); shown to the client as 400 with its message."""

    status = 400
    code = "InvalidParameterValue"


class UpstreamNotFound(UpstreamError):
    status = 404
    code = "NotFound"


class UpstreamUnavailable(UpstreamError):
    """Circuit open, rate limited after retries, or the upstream says 503 (503)."""

    status = 503
    code = "ServiceUnavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "GatewayTimeout"


class UpstreamAuthError(UpstreamError):
    """geofed's credentials for the upstream were refused (502: the client can do nothing about it)."""

    status = 502
    code = "UpstreamAuthError"
