"""``MemberOrigins`` answers a request without an ``Origin`` header exactly as Starlette's CORS
does (its own short path skips Starlette's header objects); with one, Starlette's CORS answers."""

from __future__ import annotations

import asyncio

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from hacoord.replication.base import MemberInfo
from hacoord.replication.memory import MemoryReplicator
from hacoord.server.cors import MemberOrigins


def answering(headers: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})
    return app


def answer(middleware, request_headers: list[tuple[bytes, bytes]]) -> list[Message]:  # type: ignore[no-untyped-def]
    sent: list[Message] = []
    scope = {"type": "http", "method": "GET", "path": "/v1/status", "headers": request_headers,
             "query_string": b"", "scheme": "http", "server": ("m1.test", 80)}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


@pytest.mark.parametrize("response_headers", [
    [],
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept-Encoding")],
    [(b"vary", b"Accept-Encoding"), (b"x-a", b"1"), (b"Vary", b"Cookie")],
])
@pytest.mark.parametrize("request_headers", [
    [],
    [(b"authorization", b"Bearer x")],
    [(b"origin", b"http://m2.test")],
    [(b"origin", b"http://evil.test")],
])
def test_answers_are_starlettes(response_headers: list[tuple[bytes, bytes]],
                                request_headers: list[tuple[bytes, bytes]]) -> None:
    members = {m: MemberInfo(m, f"127.0.0.1:{k}", f"http://{m}.test") for k, m in
               enumerate(("m1", "m2"), 1)}
    ours = MemberOrigins(answering(response_headers), MemoryReplicator("m1", members))
    theirs = CORSMiddleware(answering(response_headers), allow_origins=("http://m1.test",
                                                                        "http://m2.test"),
                            allow_methods=("GET",), allow_headers=("Authorization",), max_age=600)
    assert answer(ours, request_headers) == answer(theirs, request_headers)
