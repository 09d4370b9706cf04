"""API errors: one JSON shape, ``{"code": ..., "message": ...}``, for every failure.

Codes come from core rejections (``invalid_argument``, ``not_found``, ``already_exists``, ...) and
from the edges (``not_leader``, ``unavailable``, ``timeout``). The HTTP status says whether a retry
can help: 4xx never, 503/504 yes (with the same request id).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hacoord.core.model import ID_PATTERN
from hacoord.core.results import Rejected
from hacoord.protocol import ErrorCode
from hacoord.protocol.formats import ADDRESS, API_URL
from hacoord.server.offload import OffloadError

log = logging.getLogger(__name__)

#: Each code's HTTP status (:class:`hacoord.protocol.ErrorCode` is the one table).
STATUS_BY_CODE = {code.value: code.status for code in ErrorCode}


class ErrorReply(Exception):
    """The error a member replies with: raised by handlers and the coordinator service, rendered
    as the JSON error body (the client raises it again as :class:`hacoord.client.ApiError`)."""

    def __init__(self, code: str, message: str, status: int | None = None,
                 leader: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, 400)
        self.leader = leader

    @classmethod
    def from_rejection(cls, rejected: Rejected) -> ErrorReply:
        return cls(rejected.code, rejected.message)


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"code": code, "message": message, **extra}


#: What a pattern asks for, in words (a regular expression is no answer for a user).
PATTERN_WORDS = {
    ID_PATTERN.pattern: "an id: a letter or digit, then up to 62 letters, digits, '.', '_' or '-'",
    ADDRESS: "host:port, with a port in 1..65535",
    API_URL: "an http:// or https:// URL: a host, an optional port and path",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        words = PATTERN_WORDS.get(str(err.get("ctx", {}).get("pattern")))
        if err.get("type") == "string_pattern_mismatch" and words:
            name = where.rsplit(".", 1)[-1] if where else "value"
            text = str(err.get("input"))[:80]
            parts.append(f"{where or 'request'}: malformed {name} {text!r} (expected {words})")
        else:
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure as the JSON error body (no HTML, no tracebacks)."""

    @app.exception_handler(ErrorReply)
    async def _api_error(_: Request, exc: ErrorReply) -> JSONResponse:
        extra = {"leader": exc.leader} if exc.leader else {}
        return JSONResponse(error_body(exc.code, exc.message, **extra), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_argument", _validation_message(exc)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(OffloadError)
    async def _offload(_: Request, exc: OffloadError) -> JSONResponse:
        log.warning("work moved off the event loop failed: %s", exc)
        return JSONResponse(error_body("unavailable", f"{exc}; retry"), status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("internal_error", f"internal error: {type(exc).__name__}"),
                            status_code=500)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path (Starlette's own 405 names only
    the first route that matches the path)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)
