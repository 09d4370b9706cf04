"""The hot routes: what data nodes and clients call most, served without FastAPI's routing and
dependency solving.

A node's read (``GET /v1/nodes/{node_id}``), its update (``PATCH``), its heartbeat and its
metrics report make up almost all of a busy member's requests. FastAPI spends more on each of
them (matching the path against every route, solving dependencies, validating through its own
layers) than the handler itself does. :class:`HotRoutes` sits just inside the member's own
middleware (limits, cluster identity, CORS and latency metrics still see every request) and
serves these few routes itself:

* the route is the FastAPI route's own: the same endpoint function (with its leader-or-forward
  or read-point wrapper), the same declared permission, the same body model and path template
  (so metrics label it alike); a route whose parameters are not the ones listed here is refused
  when the app is built, so the two cannot drift apart;
* the token is checked first, by the same :class:`~hacoord.server.auth.Authenticator` call, as
  the route's dependency does;
* only the plain case is served here: a path parameter that is a well-formed id, no query or
  exactly ``consistent=true|false``, a JSON body (``Content-Type: application/json``) that
  decodes and that the body model accepts (decoded and validated as FastAPI does: the same
  answers). Anything else (a malformed id, another query, a body that does not decode or that
  the model refuses) goes on to FastAPI, which answers it (or refuses it) as for any route;
* errors a handler raises are rendered by the app's own exception handlers.

``create_app(hot_routes=False)`` leaves every request to FastAPI; the route tests compare the
two answer for answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.protocol.formats import ID
from hacoord.server.auth import Authenticator, Permission, bearer_credentials, declared

_ID = re.compile(ID)
_NO_BODY = object()
_BOOLS = {"true": True, "false": False}


@dataclass(frozen=True)
class HotSpec:
    """A route served hot: ``method`` and ``path`` name the FastAPI route; ``body`` is its body
    model (None: no body); ``query`` says whether it takes ``consistent``."""

    method: str
    path: str
    body: type[BaseModel] | None = None
    consistent: bool = False


@dataclass(frozen=True)
class _Hot:
    spec: HotSpec
    route: APIRoute
    permission: Permission
    pattern: re.Pattern[str]
    body_name: str | None


class HotRoutes:
    """Serves the routes of ``specs`` (see the module docstring); everything else goes to
    ``app``, the rest of the ASGI stack. ``fastapi`` is the app whose routes and exception
    handlers these are."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, auth: Authenticator,
                 specs: list[HotSpec]) -> None:
        self.app = app
        self.fastapi = fastapi
        self.auth = auth
        self.routes: dict[str, list[_Hot]] = {}
        for spec in specs:
            hot = _resolve(fastapi, spec)
            self.routes.setdefault(spec.method, []).append(hot)
        #: Requests served here, and those that matched a hot route's path but went on to
        #: FastAPI (a malformed id, another query, a refused body).
        self.served = 0
        self.passed_on = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for hot in self.routes.get(scope["method"], ()):
                match = hot.pattern.match(scope["path"])
                if match is not None:
                    await self._serve(hot, match.group(1), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, hot: _Hot, node_id: str, scope: Scope, receive: Receive,
                     send: Send) -> None:
        query = _query(scope["query_string"], hot.spec.consistent)
        if query is None or _ID.match(node_id) is None:
            self.passed_on += 1
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"node_id": node_id}
        scope["route"] = hot.route
        scope["endpoint"] = hot.route.endpoint
        request = Request(scope, receive)
        kwargs: dict[str, Any] = {"node_id": node_id, "request": request, **query}
        try:
            # FastAPI's order: the body is decoded first, the token checked, the body validated.
            decoded = _NO_BODY
            if hot.body_name is not None:
                decoded = _json(await request.body(), request.headers.get("content-type"))
                if decoded is _NO_BODY:
                    await self._pass_on(request, scope, receive, send)
                    return
            await self.auth.authorize(request, hot.permission, await bearer_credentials(request))
            if hot.body_name is not None:
                try:
                    kwargs[hot.body_name] = hot.spec.body.model_validate(decoded)  # type: ignore[union-attr]
                except ValidationError:
                    await self._pass_on(request, scope, receive, send)
                    return
            response = await hot.route.endpoint(**kwargs)
        except Exception as exc:  # noqa: BLE001 (rendered as the app renders it, or raised on)
            render = _handler_for(self.fastapi, exc)
            if render is None:
                raise
            response = await render(request, exc)
        self.served += 1
        await response(scope, receive, send)


    async def _pass_on(self, request: Request, scope: Scope, receive: Receive,
                       send: Send) -> None:
        """Leave the request to FastAPI, its body (if read) handed on again."""
        self.passed_on += 1
        body = getattr(request, "_body", None)
        await self.app(scope, receive if body is None else _replay(body, receive), send)


def _resolve(app: FastAPI, spec: HotSpec) -> _Hot:
    """The FastAPI route ``spec`` names, checked to take exactly what the hot path passes."""
    route = next((r for r in app.routes if isinstance(r, APIRoute) and r.path == spec.path
                  and spec.method in r.methods), None)
    if route is None:
        raise RuntimeError(f"no route {spec.method} {spec.path} to serve hot")
    permission = declared(route)
    if permission is None or permission is Permission.OPEN:
        raise RuntimeError(f"route {spec.method} {spec.path} serves hot but declares no token")
    dependant = route.dependant
    bodies = [(f.name, f.field_info.annotation) for f in dependant.body_params]
    expected = {"path": ["node_id"], "query": ["consistent"] if spec.consistent else [],
                "body": [spec.body] if spec.body is not None else []}
    found = {"path": [f.name for f in dependant.path_params],
             "query": [f.name for f in dependant.query_params],
             "body": [annotation for _, annotation in bodies]}
    if found != expected or dependant.request_param_name != "request" \
            or dependant.header_params or dependant.cookie_params:
        raise RuntimeError(f"route {spec.method} {spec.path} takes {found}; the hot path passes "
                           f"{expected} and the request")
    path = re.escape(spec.path).replace(re.escape("{node_id}"), "([^/]+)")
    return _Hot(spec, route, permission, re.compile(f"^{path}$"),
                bodies[0][0] if bodies else None)


def _query(raw: bytes, consistent: bool) -> dict[str, bool] | None:
    """The handler's query arguments, or None when the query is not the plain case."""
    if not raw:
        return {"consistent": False} if consistent else {}
    if not consistent or not raw.startswith(b"consistent="):
        return None
    value = _BOOLS.get(raw[len(b"consistent="):].decode("latin-1"))
    return None if value is None else {"consistent": value}


def _json(body: bytes, content_type: str | None) -> Any:
    """``body`` decoded as FastAPI decodes it, or :data:`_NO_BODY` when it is not the plain
    case: a non-empty body that declares itself ``application/json`` and decodes."""
    if not body or content_type is None \
            or content_type.split(";", 1)[0].strip().lower() != "application/json":
        return _NO_BODY
    try:
        return json.loads(body)
    except ValueError:
        return _NO_BODY


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already read ``body`` on once, then listens as before."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def _handler_for(app: FastAPI, exc: Exception) -> Callable[..., Any] | None:
    """The app's handler for ``exc``, as its exception middleware would find it; None for what
    only the outermost error handler renders (an unexpected error: it is raised on to it)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return handler
    return None
