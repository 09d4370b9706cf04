"""The hot routes: what data nodes and clients call most, served without FastAPI's routing and
dependency solving.

A node's read (``GET /v1/nodes/{node_id}``), its update (``PATCH``), its heartbeat and its
metrics report make up almost all of a busy member's requests. FastAPI spends more on each of
them (matching the path against every route, solving dependencies, validating through its own
layers) than the handler itself does. :class:`HotRoutes` sits just inside the member's own
middleware (limits, cluster identity, CORS and latency metrics still see every request) and
serves these few routes itself:

* the route is the FastAPI route's own (:func:`resolve`, when the app is built): the same
  endpoint function (with its leader-or-forward or read-point wrapper), the same declared
  permission, the same path and body fields, validating as FastAPI does, and the same path
  template (so metrics label it alike). A route that takes anything else (another dependency,
  parameter or default), or that an earlier route would shadow, is refused, so the two cannot
  drift apart;
* FastAPI's order: the body is read and decoded, the token checked (by the same
  :class:`~hacoord.server.auth.Authenticator` call as the route's dependency), then path and
  body validated;
* only the plain case is served here: no root path, a path parameter the route's own field
  accepts, no query or exactly ``consistent=true|false``, a body that declares itself
  ``application/json``, was read whole, decodes, and that the route's body field accepts.
  Anything else (a malformed id, another query, a body that does not decode or validate, a
  client gone while its body was read) goes on to FastAPI, which answers it as for any route;
* errors a handler raises are rendered by the app's own exception handlers; unexpected ones are
  raised on to the outermost error handler, as FastAPI's exception middleware does.

``create_app(hot_routes=False)`` leaves every request to FastAPI; the route tests compare the
two answer for answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.server.auth import Authenticator, Permission, bearer_credentials, declared

_BOOLS = {"true": True, "false": False}
#: What :func:`_json` answers for a body that is not the plain case.
_NOT_PLAIN = object()


@dataclass(frozen=True)
class HotSpec:
    """A route served hot: ``method`` and ``path`` name the FastAPI route; ``body`` is its body
    model (None: no body); ``consistent`` says whether it takes the ``consistent`` flag."""

    method: str
    path: str
    body: type[BaseModel] | None = None
    consistent: bool = False


@dataclass(frozen=True)
class HotRoute:
    """A :class:`HotSpec` resolved against its FastAPI route (see :func:`resolve`)."""

    spec: HotSpec
    route: APIRoute
    permission: Permission
    pattern: re.Pattern[str]
    node_id: Any  # the route's path field (FastAPI's ModelField)
    body: Any  # the route's body field, or None
    body_name: str | None


class HotRoutes:
    """Serves ``routes`` (see the module docstring); everything else goes to ``app``, the rest
    of the ASGI stack. ``fastapi`` is the app whose routes and exception handlers these are."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, auth: Authenticator,
                 routes: list[HotRoute]) -> None:
        self.app = app
        self.fastapi = fastapi
        self.auth = auth
        self.routes: dict[str, list[HotRoute]] = {}
        for hot in routes:
            self.routes.setdefault(hot.spec.method, []).append(hot)
        #: Requests answered here (refusals included), and those that matched a hot route's
        #: path but went on to FastAPI (not the plain case).
        self.served = 0
        self.passed_on = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for hot in self.routes.get(scope["method"], ()):
                match = hot.pattern.fullmatch(scope["path"])
                if match is not None:
                    await self._serve(hot, match.group(1), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, hot: HotRoute, node_id: str, scope: Scope, receive: Receive,
                     send: Send) -> None:
        query = _query(scope["query_string"], hot.spec.consistent)
        if query is None:
            self.passed_on += 1
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"node_id": node_id}
        scope["route"] = hot.route
        scope["endpoint"] = hot.route.endpoint
        request = Request(scope, receive)
        try:
            response = await self._answer(hot, node_id, request, query)
        except Exception as exc:  # noqa: BLE001 (rendered as the app renders it, or raised on)
            render = _handler_for(self.fastapi, exc)
            if render is None:
                raise
            response = await render(request, exc)
        if response is None:  # not the plain case: FastAPI's, its body (if read) handed on
            self.passed_on += 1
            body = getattr(request, "_body", None)
            await self.app(scope, receive if body is None else _replay(body, receive), send)
            return
        self.served += 1
        await response(scope, receive, send)

    async def _answer(self, hot: HotRoute, node_id: str, request: Request,
                      query: dict[str, bool]) -> Response | None:
        """The route's answer, or None when the request is not the plain case. FastAPI's order:
        the body decoded, the token checked, path and body validated."""
        kwargs: dict[str, Any] = {"request": request, **query}
        decoded: Any = _NOT_PLAIN
        if hot.body is not None:
            decoded = await _json(request)
            if decoded is _NOT_PLAIN:
                return None
        await self.auth.authorize(request, hot.permission, await bearer_credentials(request))
        kwargs["node_id"], errors = hot.node_id.validate(node_id)
        if hot.body is not None and not errors:
            kwargs[hot.body_name], errors = hot.body.validate(decoded)  # type: ignore[index]
        if errors:
            return None
        return await hot.route.endpoint(**kwargs)  # type: ignore[no-any-return]


def resolve(app: FastAPI, specs: list[HotSpec]) -> list[HotRoute]:
    """The FastAPI routes ``specs`` name, each checked to take exactly what the hot path passes
    and to be the route FastAPI would match first. Raises ``RuntimeError`` otherwise."""
    return [_resolve(app, spec) for spec in specs]


def _resolve(app: FastAPI, spec: HotSpec) -> HotRoute:
    where = f"route {spec.method} {spec.path}"
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    route = next((r for r in routes if r.path == spec.path and spec.method in r.methods), None)
    if route is None:
        raise RuntimeError(f"no {where} to serve hot")
    permission = declared(route)
    if permission is None or permission is Permission.OPEN:
        raise RuntimeError(f"{where} serves hot but declares no token")
    pattern = re.compile(re.escape(spec.path).replace(re.escape("{node_id}"), "([^/]+)"))
    for earlier in routes[:routes.index(route)]:
        concrete = re.sub(r"\{[^}]*\}", "x", earlier.path)
        if spec.method in earlier.methods and pattern.fullmatch(concrete):
            raise RuntimeError(f"{where} serves hot, but {earlier.path} comes first and "
                               "FastAPI would match it")
    dependant = route.dependant
    expected = {"path": ["node_id"], "query": [("consistent", bool, False)] if spec.consistent
                else [], "body": [spec.body] if spec.body is not None else [],
                "dependencies": 1, "request": "request", "headers": [], "cookies": []}
    found = {"path": [f.name for f in dependant.path_params],
             "query": [(f.name, f.field_info.annotation, f.field_info.default)
                       for f in dependant.query_params],
             "body": [f.field_info.annotation for f in dependant.body_params],
             "dependencies": len(dependant.dependencies), "request": dependant.request_param_name,
             "headers": dependant.header_params, "cookies": dependant.cookie_params}
    if found != expected:
        raise RuntimeError(f"{where} takes {found}; the hot path passes {expected}")
    body = dependant.body_params[0] if dependant.body_params else None
    return HotRoute(spec, route, permission, pattern, dependant.path_params[0], body,
                    body.name if body is not None else None)


def _query(raw: bytes, consistent: bool) -> dict[str, bool] | None:
    """The handler's query arguments, or None when the query is not the plain case."""
    if not raw:
        return {"consistent": False} if consistent else {}
    if not consistent or not raw.startswith(b"consistent="):
        return None
    value = _BOOLS.get(raw[len(b"consistent="):].decode("latin-1"))
    return None if value is None else {"consistent": value}


async def _json(request: Request) -> Any:
    """The request's body decoded as FastAPI decodes it, or :data:`_NOT_PLAIN` when it is not
    the plain case: a non-empty body, read whole, that declares itself ``application/json``
    and decodes (anything else, a client gone or a body nested too deep included, is left to
    FastAPI)."""
    content_type = request.headers.get("content-type")
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != "application/json":
        return _NOT_PLAIN
    try:
        body = await request.body()
        return json.loads(body) if body else _NOT_PLAIN
    except Exception:  # noqa: BLE001 (a disconnect, undecodable or too deep: FastAPI's to answer)
        return _NOT_PLAIN


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
