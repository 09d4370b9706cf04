"""The asyncio client against the same in-process cluster as the synchronous one: the same
methods with the same signatures, typed results and errors, leader following through a stale
follower, a member that is down, one request id across retries, the watch, and the deadline."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Iterator

import httpx
import pytest

import hacoord
import hacoord.client
import hacoord.protocol.events
import hacoord.testing
from hacoord.client import (
    AsyncClient,
    Client,
    Compacted,
    Conflict,
    NotFound,
    ServiceUnavailable,
    StaleEpoch,
    UnavailableError,
)
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(3, leader="m2") as running:
        yield running


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in dir(cls)
            if not name.startswith("_") and callable(getattr(cls, name)) and name not in ("close", "aclose")}


def test_the_public_api_is_pinned() -> None:
    for name in ("Client", "AsyncClient", "NotFound", "UnavailableError"):
        assert name in hacoord.__all__ and getattr(hacoord, name) is getattr(hacoord.client, name)
    for name in ("AsyncClient", "StaleEpoch", "Compacted", "Conflict", "WatchEvent", "RoutingTable"):
        assert name in hacoord.client.__all__
    assert hacoord.client.StaleEpoch is StaleEpoch and hacoord.client.Compacted is Compacted
    for name in ("LocalCluster", "InProcessCluster", "FakeCoordinator", "RecordingHandler",
                 "running_cluster", "wait_for", "apply_plan"):
        assert name in hacoord.testing.__all__ and hasattr(hacoord.testing, name)
    for name in ("EventData", "NodeRemoved", "PartitionChanged", "parse_event", "EventFormatError"):
        assert name in hacoord.protocol.events.__all__


def test_the_async_client_has_every_method_of_the_client_as_a_coroutine() -> None:
    sync, aio = public_methods(Client), public_methods(AsyncClient)
    assert set(sync) == set(aio)
    for name, signature in sync.items():
        assert list(aio[name].parameters) == list(signature.parameters), name
        if name == "watch":
            assert inspect.isasyncgenfunction(AsyncClient.watch)
        else:
            assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert getattr(AsyncClient, name).__doc__, name


def test_typed_results_and_errors_from_the_app(cluster: InProcessCluster) -> None:
    async def scenario() -> None:
        async with AsyncClient(cluster.urls, transport=cluster.async_transport()) as client:
            for i in range(1, 4):
                await client.node_add(f"n{i}", f"10.0.0.{i}:9000", zone=f"z{i}", capacity=2)
            made = await client.resource_create("orders", partitions=3, replicas=2)
            assert made.resource is not None and made.resource.replication_factor == 2
            table = await client.routing("orders", consistent=True)
            assert table.revision == made.revision == 4 and len(table.partitions) == 3
            route = table.route("orders", 0)
            outsider, = [n for n in ("n1", "n2", "n3") if n not in route.replicas]
            moved = await client.partition_move("orders", 0, route.replicas[1], outsider)
            assert moved.partition is not None and moved.partition.epoch == route.epoch + 1
            session = await client.node_start_session("n1")
            assert (await client.node_heartbeat("n1", session.epoch)).epoch == session.epoch
            with pytest.raises(StaleEpoch):
                await client.node_heartbeat("n1", session.epoch - 1)
            with pytest.raises(Conflict) as caught:
                await client.node_remove("n1")
            assert caught.value.code == "node_not_empty"
            settings = await client.rebalance_configure(max_moves=3)
            assert settings["max_moves"] == 3
            assert (await client.rebalance_status())["settings"]["max_moves"] == 3
            assert (await client.explain("orders", 0))["partition"] == 0
            await client.resource_delete("orders")
            with pytest.raises(NotFound):
                await client.routing("orders", consistent=True)
            assert await client.request_status(made.request_id) == made.revision
            assert client.leader == "m2"

    asyncio.run(scenario())


def test_follows_the_leader_through_a_stale_follower_and_around_a_dead_member(
        cluster: InProcessCluster) -> None:
    cluster.replicators["m1"].set_leader("m3")  # m1 forwards to m3, which knows m2 leads

    async def scenario() -> None:
        async with AsyncClient(cluster.urls, transport=cluster.async_transport()) as client:
            await client.node_add("n1", "10.0.0.1:9000")
            assert client.leader == "m2"
            cluster.received.clear()
            await client.node_add("n2", "10.0.0.2:9000")
            assert [m for m, _ in cluster.received] == ["m2"]
            cluster.down.add("m3")
            await client.node_add("n3", "10.0.0.3:9000")
            status = await client.status()
            assert status.leader == "m2"
            assert [(m.member_id, m.reachable) for m in status.members] == [
                ("m1", True), ("m2", True), ("m3", False)]

    asyncio.run(scenario())


def test_a_write_whose_answer_is_lost_is_applied_once(cluster: InProcessCluster) -> None:
    inner = cluster.async_transport()
    lost: list[httpx.Response] = []

    class LoseFirstAnswer(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            if request.method == "POST" and not lost:
                lost.append(response)
                raise httpx.ReadTimeout("answer lost", request=request)
            return response

    async def scenario() -> int:
        async with AsyncClient([cluster.url("m2")], transport=LoseFirstAnswer()) as client:
            return (await client.node_add("n1", "10.0.0.1:9000")).revision

    assert asyncio.run(scenario()) == 1 and lost and lost[0].status_code == 201
    posts = cluster.hits("m2", "POST")
    assert len(posts) == 2 and posts[0].headers["x-request-id"] == posts[1].headers["x-request-id"]
    assert cluster.state("m2").revision == 1


def test_watch_yields_every_change_in_order(cluster: InProcessCluster) -> None:
    async def scenario() -> list[tuple[int, str]]:
        # In process only the leader applies writes (a follower here is one that lags).
        async with AsyncClient([cluster.url("m2")], transport=cluster.async_transport()) as client:
            seen: list[tuple[int, str]] = []

            async def follow() -> None:
                async for event in client.watch(0, poll=1.0):
                    seen.append((event.revision, event.type))
                    if len(seen) == 3:
                        return

            watcher = asyncio.create_task(follow())
            for i in range(1, 4):
                await client.node_add(f"n{i}", f"10.0.0.{i}:9000")
            await asyncio.wait_for(watcher, timeout=20)
            return seen

    assert asyncio.run(scenario()) == [(1, "NodeRegistered"), (2, "NodeRegistered"),
                                       (3, "NodeRegistered")]


def test_no_leader_ends_in_unavailable_error_at_the_deadline(cluster: InProcessCluster) -> None:
    cluster.set_leader(None)

    async def scenario() -> UnavailableError:
        # A deadline long enough for two attempts on a busy machine (an attempt that takes
        # most of it leaves no room for another).
        async with AsyncClient(cluster.urls, transport=cluster.async_transport(),
                               deadline=2.0) as client:
            assert await client.node_list() == []  # plain reads need no leader
            with pytest.raises(UnavailableError) as caught:
                await client.node_add("n1", "10.0.0.1:9000")
            return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error.cause, ServiceUnavailable) and error.cause.code == "no_leader"
    assert error.attempts >= 2


def test_a_missing_token_is_a_typed_error(cluster: InProcessCluster) -> None:
    async def scenario() -> None:
        async with AsyncClient(cluster.urls, transport=cluster.async_transport(None),
                               token="") as client:
            with pytest.raises(hacoord.client.Unauthenticated):
                await client.node_list()

    asyncio.run(scenario())


class TimingOut(httpx.BaseTransport):
    """The in-process transport with httpx's read timeout enforced, as a socket would."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        future = self.pool.submit(self.inner.handle_request, request)
        try:
            return future.result(timeout=request.extensions["timeout"]["read"])
        except concurrent.futures.TimeoutError:
            raise httpx.ReadTimeout("timed out", request=request) from None


class AsyncTimingOut(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await asyncio.wait_for(self.inner.handle_async_request(request),
                                          request.extensions["timeout"]["read"])
        except TimeoutError:
            raise httpx.ReadTimeout("timed out", request=request) from None


def test_a_quiet_watch_outlasts_the_client_deadline(cluster: InProcessCluster) -> None:
    """A long poll is held by the member for ``poll`` seconds: that is not the cluster failing,
    even when ``poll`` is longer than the client's deadline (both clients)."""
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 1  # one poll, then stop

    # Each poll is held 2.5 s, longer than the 1.5 s deadline; the attempt may take 4 s.
    with Client([cluster.url("m2")], transport=TimingOut(cluster.transport), timeout=3.0,
                deadline=1.5) as client:
        assert list(client.watch(poll=2.5, stop=stop)) == []

    async def scenario() -> list:
        polls.clear()
        async with AsyncClient([cluster.url("m2")], transport=AsyncTimingOut(cluster.async_transport()),
                               timeout=3.0, deadline=1.5) as client:
            return [e async for e in client.watch(poll=2.5, stop=stop)]

    assert asyncio.run(scenario()) == []
