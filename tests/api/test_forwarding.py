"""A follower forwarding to a leader that stops answering gives up as soon as leadership moves;
the client it forwards with is built off the loop and refused once the member stops."""

from __future__ import annotations

import asyncio
import threading

import anyio
import httpx
import pytest

from hacoord.replication.memory import MemoryReplicator
from hacoord.server.context import ApiContext
from hacoord.server.errors import ErrorReply
from hacoord.testing.inprocess import InProcessCluster


def test_forward_to_a_hung_leader_is_abandoned_when_leadership_moves() -> None:
    with InProcessCluster(3, leader="m2") as cluster:
        original = cluster.dispatch
        release = threading.Event()

        async def hanging(request: httpx.Request) -> httpx.Response:
            if request.url.host == "m2.test":  # the paused leader: accepts, never answers
                with anyio.move_on_after(30):
                    while not release.is_set():
                        await anyio.sleep(0.01)
            return await original(request)

        cluster.dispatch = hanging  # type: ignore[method-assign]
        result: dict[str, httpx.Response] = {}

        def write() -> None:
            with httpx.Client(transport=cluster.transport) as http:
                result["r"] = http.post(cluster.url("m1") + "/v1/nodes",
                                        json={"id": "n1", "address": "127.0.0.1:1"},
                                        headers={"x-request-id": "same-id"})

        thread = threading.Thread(target=write)
        thread.start()
        try:
            thread.join(timeout=0.5)
            assert thread.is_alive()  # held by the hung leader
            cluster.replicators["m1"].set_leader("m3")  # m1 learns of a new leader
            thread.join(timeout=10)
            assert not thread.is_alive()
        finally:
            release.set()
            thread.join(timeout=10)
        response = result["r"]
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "not_leader" and body["leader"] == "m3"


def test_the_members_client_is_built_off_the_loop_and_refused_once_the_member_stops() -> None:
    """Forwarding waits for the client being built at start; a forward that was waiting when the
    member began to stop, or one after, is answered ``unavailable`` (a retry goes elsewhere)."""
    async def scenario() -> None:
        ctx = ApiContext(MemoryReplicator(), None, None, None, 5.0)  # type: ignore[arg-type]
        await ctx.open()
        waiting = asyncio.ensure_future(ctx.members_client())
        client = await ctx.members_client()
        assert await waiting is client and not client.is_closed
        await ctx.close()
        assert client.is_closed
        with pytest.raises(ErrorReply) as after:
            await ctx.members_client()
        assert after.value.code == "unavailable"

        await ctx.open()
        waiting = asyncio.ensure_future(ctx.members_client())
        await asyncio.sleep(0)  # it waits for the client being built
        await ctx.close()
        with pytest.raises(ErrorReply) as meanwhile:
            await waiting
        assert meanwhile.value.code == "unavailable"

    asyncio.run(scenario())


def test_a_forward_carries_the_clients_own_header_bytes_and_always_a_request_id() -> None:
    """A request id of any bytes the HTTP parser accepts is forwarded as sent (httpx refused a
    non-ASCII one given as text: a 500 at the follower, a 201 at the leader); a write sent
    without one is forwarded with an id the follower made, which the leader keeps (so the
    forward's seal covers exactly that write) and the audit names the follower."""
    with InProcessCluster(3, leader="m2") as cluster, \
            httpx.Client(transport=cluster.transport) as http:
        odd = http.post(cluster.url("m1") + "/v1/nodes", json={"id": "n1", "address": "h:1"},
                        headers={"x-request-id": b"caf\xe9"})
        assert odd.status_code == 201, odd.text
        plain = http.post(cluster.url("m1") + "/v1/nodes", json={"id": "n2", "address": "h:1"})
        assert plain.status_code == 201, plain.text
        forwarded = [r for m, r in cluster.received if m == "m2" and r.url.path == "/v1/nodes"]
        assert len(forwarded) == 2
        assert forwarded[0].headers.get_list("x-request-id") == ["café"]
        assert len(forwarded[1].headers["x-request-id"]) == 32
        entries = http.get(cluster.url("m2") + "/v1/audit", params={"since": 0}).json()["entries"]
        made = next(e for e in entries if e["request_id"] == forwarded[1].headers["x-request-id"])
        assert made["via"] == "m1" and made["command"] == "RegisterNode"
