"""A request still running when uvicorn's stop grace ends is cancelled by uvicorn: the outermost
middleware answers it 503 with the JSON error body and ends it there, instead of letting the
cancellation reach uvicorn, which answered 500 and logged a traceback."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from hacoord.server.cutoff import CutOffAtStop

SCOPE: Scope = {"type": "http", "method": "POST", "path": "/v1/resources", "headers": []}


async def never_answers(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.Event().wait()


async def answers_half(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.Event().wait()


async def run_and_cut_off(app: object) -> tuple[CutOffAtStop, list[Message], asyncio.Task]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = CutOffAtStop(app)  # type: ignore[arg-type]
    task = asyncio.ensure_future(middleware(SCOPE, receive, send))
    for _ in range(10):  # let the request reach its wait
        await asyncio.sleep(0)
    task.cancel("Task cancelled, timeout graceful shutdown exceeded")  # what uvicorn does
    await asyncio.wait([task], timeout=5)
    return middleware, sent, task


def test_a_request_cut_off_unanswered_gets_503_and_ends_quietly(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hacoord.server.cutoff"):
        middleware, sent, task = asyncio.run(run_and_cut_off(never_answers))
    assert task.done() and not task.cancelled() and task.exception() is None
    assert task.cancelling() == 0  # the cancellation is ended, not left pending
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 503
    body = json.loads(sent[1]["body"])
    assert body["code"] == "unavailable" and "stopped" in body["message"]
    assert middleware.cut_off == 1
    assert "POST /v1/resources cut off" in caplog.text


def test_a_request_cut_off_mid_answer_sends_nothing_more() -> None:
    _, sent, task = asyncio.run(run_and_cut_off(answers_half))
    assert task.done() and not task.cancelled()
    assert [m["type"] for m in sent] == ["http.response.start"]


def test_a_cancelled_future_inside_a_request_is_not_taken_for_the_stop() -> None:
    """A CancelledError from a future that something else cancelled (not the request's task)
    is the app's own affair: it goes on up, as before."""
    async def awaits_a_cancelled_future(scope: Scope, receive: Receive, send: Send) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    async def scenario() -> BaseException | None:
        middleware = CutOffAtStop(awaits_a_cancelled_future)  # type: ignore[arg-type]

        async def send(message: Message) -> None:
            raise AssertionError(f"nothing is sent: {message}")

        try:
            await middleware(SCOPE, lambda: None, send)  # type: ignore[arg-type]
        except asyncio.CancelledError as exc:
            return exc
        return None

    assert isinstance(asyncio.run(scenario()), asyncio.CancelledError)
