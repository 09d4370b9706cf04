"""A follower forwarding to a leader that stops answering gives up as soon as leadership moves."""

from __future__ import annotations

import threading

import anyio
import httpx

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
