"""The change feed: long-poll watch on any member, in order, no gaps, compacted answers."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator

import httpx
import pytest

from hacoord.client import Client, Compacted
from hacoord.core.events import Event
from hacoord.replication.feed import ChangeFeed, HistoryCompacted
from hacoord.testing.cluster import wait_for
from hacoord.testing.inprocess import InProcessCluster


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(1) as single:
        yield single


def client_of(cluster: InProcessCluster) -> Client:
    return Client(cluster.urls, timeout=2, deadline=5, transport=cluster.transport)


def test_watch_returns_whole_revisions_in_order_and_waits(cluster: InProcessCluster) -> None:
    client = client_of(cluster)
    client.node_add("a", address="127.0.0.1:1")
    client.node_add("b", address="127.0.0.1:2")
    client.resource_create("r", partitions=2, replicas=2)
    client.node_set_state("a", status="down")  # one revision, several events
    events = list(itertools.islice(client.watch(since=0, poll=0.05), 5))
    assert [e.revision for e in events] == sorted(e.revision for e in events)
    assert [e.type for e in events[:3]] == ["NodeRegistered", "NodeRegistered", "ResourceCreated"]
    assert {e.type for e in events if e.revision == 4} == {"NodeStateChanged", "PartitionChanged"}

    # From "now": only what happens after the watch started.
    seen: list[str] = []
    stop = threading.Event()

    def follow() -> None:
        for event in client_of(cluster).watch(poll=0.05, stop=stop.is_set):
            seen.append(event.type)
            stop.set()

    thread = threading.Thread(target=follow)
    thread.start()
    wait_for("the watcher to be waiting", lambda: cluster_has_watcher(cluster), timeout=10)
    client.node_add("c", address="127.0.0.1:3")
    thread.join(timeout=10)
    assert seen == ["NodeRegistered"]


def cluster_has_watcher(cluster: InProcessCluster) -> bool:
    with httpx.Client(transport=cluster.transport) as http:
        text = http.get(cluster.url("m1") + "/metrics").text
    return any(line.startswith("hacoord_watchers ") and not line.endswith(" 0.0")
               for line in text.splitlines())


def test_an_empty_poll_returns_after_its_timeout(cluster: InProcessCluster) -> None:
    with httpx.Client(transport=cluster.transport, base_url=cluster.url("m1")) as http:
        body = http.get("/v1/watch", params={"since": 0, "timeout": 0.05}).json()
    assert body["events"] == [] and body["revision"] == 0


def test_feed_drops_whole_revisions_and_answers_compacted() -> None:
    feed = ChangeFeed(capacity=3)
    for rev in (1, 2, 3):
        feed.record([Event("A", rev), Event("B", rev)])
    assert feed.floor == 2
    assert [e.revision for e in feed.since(2)] == [3, 3]
    with pytest.raises(HistoryCompacted):
        feed.since(1)
    feed.reset(10)
    assert feed.since(10) == [] and feed.floor == 10


def test_compacted_reaches_the_client_as_a_typed_error(cluster: InProcessCluster) -> None:
    client = client_of(cluster)
    client.node_add("a", address="127.0.0.1:1")
    cluster.replicators["m1"].feed.reset(5)  # as after a snapshot install
    with pytest.raises(Compacted):
        next(client.watch(since=0, poll=0.05))


def test_waiters_wake_on_record() -> None:
    async def scenario() -> list[int]:
        feed = ChangeFeed()
        waiter = asyncio.create_task(feed.wait(0, timeout=5))
        await asyncio.sleep(0)
        feed.record([Event("A", 1)])
        await asyncio.wait_for(waiter, 1)
        return [e.revision for e in feed.since(0)]

    assert asyncio.run(scenario()) == [1]
