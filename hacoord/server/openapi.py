"""The API's OpenAPI document, completed with every error a route can answer.

FastAPI documents each route's success and a 422 it never sends here (hacoord answers invalid
input 400 with its JSON error body). :func:`document_errors` replaces that with the error body's
schema under every status the route can answer:

* every route: 400 (invalid input), 413 and 431 (body and header limits), 503 (not ready, no
  leader, leader unreachable: retry) and 504 (a write or a consistent read that timed out);
* every write: 404 (an unknown node, resource or partition), 409 (a rule of the state refused it,
  or a request id reused) and 429 (the per-client write rate);
* a route with an id in its path: 404;
* :data:`EXTRA` for the rest (410 for history that is no longer kept, 429 for long polls);
* every route that asks for a token (it says so with its ``security``): 401 and 403.

``/livez`` answers only 200 (and the limits'); ``/readyz`` 200 or 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hacoord.server.errors import STATUS_BY_CODE

COMMON = (400, 413, 431, 503, 504)
WRITES = (404, 409, 429)
EXTRA: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/v1/watch"): (410, 429),
    ("GET", "/v1/routing"): (404, 410),
    ("GET", "/v1/routing/diff"): (404, 410),
    ("GET", "/v1/rebalance/plan"): (404,),
}
HEALTH: dict[str, tuple[int, ...]] = {"/livez": (413, 431), "/readyz": (413, 431, 503)}
DESCRIPTIONS = {400: "Invalid input", 404: "Not found", 409: "Refused by the state's rules",
                410: "History no longer kept (compacted)", 413: "Body too large",
                429: "Too many requests (see Retry-After)", 431: "Headers too large",
                401: "No token, or one the cluster does not accept (see WWW-Authenticate)",
                403: "The token's role (or node) may not do this",
                503: "Not ready, no leader or leader unreachable: retry",
                504: "Timed out: retry with the same request id"}

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "enum": sorted(STATUS_BY_CODE)},
        "message": {"type": "string"},
        "leader": {"type": "string", "description": "the member that leads, when known"},
    },
}


def error_statuses(method: str, path: str) -> tuple[int, ...]:
    """The error statuses ``method path`` can answer (see the module docstring)."""
    if path in HEALTH:
        return HEALTH[path]
    statuses = set(COMMON) | set(EXTRA.get((method, path), ()))
    if method != "GET":
        statuses |= set(WRITES)
    if "{" in path:
        statuses.add(404)
    return tuple(sorted(statuses))


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` list every route's errors with the error body's schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                statuses = error_statuses(method.upper(), path)
                if operation.get("security"):
                    statuses = (*statuses, 401, 403)
                for status in statuses:
                    responses[str(status)] = {
                        "description": DESCRIPTIONS.get(status, "Error"),
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
