"""The last resort of a stopping member: a request still running when uvicorn's grace ends.

A stopping member answers what waits on Raft well before the HTTP server's grace runs out
(:meth:`hacoord.replication.raft.RaftReplicator.begin_stop`). Anything that still runs when the
grace ends (a big placement or a backup computed off the loop, say) has its task cancelled by
uvicorn, which then logs a traceback for an ordinary stop and answers 500 if nothing was sent.
:class:`CutOffAtStop`, the outermost middleware, answers such a request 503 with the JSON error
body instead (a retry goes to another member; a write keeps its request id) and logs one line.
uvicorn cancels a request's task only then (a client that goes away does not cancel it), so the
cancellation ends the request here rather than being passed on. (A request cut off in the middle
of its answer is closed unfinished: uvicorn logs that too.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hacoord.server.errors import error_body

log = logging.getLogger(__name__)

CUT_OFF = ("the member stopped before this request was answered; retry at another member (a "
           "write with the same request id)")


class CutOffAtStop:
    """Pure ASGI middleware: a request whose task is cancelled is answered 503 (if nothing of
    an answer was sent yet) and ends there. See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Requests cut off so far.
        self.cut_off = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling() == 0:
                raise  # not this request's task cancelled: a future someone else cancelled
            task.uncancel()
            self.cut_off += 1
            log.warning("%s %s cut off: the member stopped before it was answered",
                        scope.get("method"), scope.get("path"))
            if not started:
                await self._answer(scope, receive, send)

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
        answer = JSONResponse(error_body("unavailable", CUT_OFF), status_code=503,
                              headers={"Retry-After": "1"})
        with contextlib.suppress(OSError, RuntimeError):  # the connection is gone: no one to tell
            await answer(scope, receive, send)
