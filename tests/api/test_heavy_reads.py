"""Whole-state reads: built in a forked child on a large state, byte for byte what the inline
path gives, shared by readers of one revision, and the API's answers unchanged by it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi.responses import JSONResponse

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.core.codec import digest
from hacoord.core.health import summary
from hacoord.placement import place_resource
from hacoord.replication.feed import ChangeFeed
from hacoord.server.offload import OffloadError
from hacoord.server.reads import HeavyReads, encode_json
from hacoord.server.views import routing
from hacoord.testing.inprocess import running_cluster

BIG = 10**9  # a size estimate above the offload threshold: the answer is built in a child


def placed(partitions: int = 300, nodes: int = 9) -> ClusterState:
    state = ClusterState()
    for k in range(nodes):
        assert apply(state, c.RegisterNode(node_id=f"n{k}", address=f"10.0.0.{k}:1",
                                           zone=f"z{k % 3}")).ok
    assignment = place_resource(state, "r", partitions, 3)
    assert apply(state, c.CreateResource(name="r", partitions=partitions, replication_factor=3,
                                         assignment=assignment)).ok
    return state


def test_encoding_is_the_one_json_responses_use() -> None:
    body = {"revision": 3, "text": "é\u2028", "list": [1, 2.5, None, True]}
    assert encode_json(body) == JSONResponse(body).body


def test_a_child_builds_what_the_loop_would_and_one_build_serves_a_revision() -> None:
    state = placed()
    reads = HeavyReads()

    async def scenario() -> list[tuple[int, bytes]]:
        asked = [reads.answer(("routing", None), state.revision, routing, state, None,
                              size=BIG, name="routing") for _ in range(5)]
        return list(await asyncio.gather(*asked))

    answers = asyncio.run(scenario())
    assert answers == [(state.revision, encode_json(routing(state)))] * 5
    assert reads.counts == {"built": 1, "reused": 4}  # five readers at once, one child
    again = asyncio.run(reads.answer(("routing", None), state.revision, routing, state, None,
                                     size=BIG, name="routing"))
    assert again == answers[0] and reads.counts["reused"] == 5
    assert apply(state, c.RegisterNode(node_id="late", address="h:1")).ok
    fresh = asyncio.run(reads.answer(("routing", None), state.revision, routing, state, None,
                                     size=BIG, name="routing"))
    assert fresh[0] == state.revision == answers[0][0] + 1 and reads.counts["built"] == 2


def explode(state: Any) -> dict[str, Any]:
    raise ValueError("broken view")


def test_a_failed_build_is_an_error_for_every_reader_and_is_not_kept() -> None:
    state = placed(30)
    reads = HeavyReads()

    async def scenario() -> list[Any]:
        asked = [reads.answer(("bad",), 1, explode, state, size=BIG, name="bad") for _ in range(3)]
        return list(await asyncio.gather(*asked, return_exceptions=True))

    failures = asyncio.run(scenario())
    assert all(isinstance(f, OffloadError) and "broken view" in str(f) for f in failures)
    assert reads.kept_bytes() == 0 and reads.counts["built"] == 0


def test_kept_answers_are_bounded_in_count_and_bytes() -> None:
    reads = HeavyReads(max_kept=3, max_bytes=10_000)

    def sized(revision: int, length: int) -> dict[str, Any]:
        return {"revision": revision, "pad": "x" * length}

    for revision in range(6):
        asyncio.run(reads.answer(("pad", revision), revision, sized, revision, 100, size=0,
                                 name="pad"))
    assert len(reads._kept) == 3
    asyncio.run(reads.answer(("pad",), 9, sized, 9, 9_000, size=0, name="pad"))
    assert reads.kept_bytes() <= 10_000
    asyncio.run(reads.answer(("pad",), 10, sized, 10, 20_000, size=0, name="pad"))
    assert reads.kept_bytes() <= 10_000  # too big to keep at all


def test_a_newer_answer_to_a_question_replaces_the_older_one() -> None:
    """Only the newest answer to each question is kept (readers ask for the newest)."""
    reads = HeavyReads()

    def sized(revision: int) -> dict[str, Any]:
        return {"revision": revision, "pad": "x" * 1000}

    for revision in (4, 5):
        asyncio.run(reads.answer(("routing",), revision, sized, revision, size=0, name="pad"))
        asyncio.run(reads.answer(("digest",), revision, sized, revision, size=0, name="pad"))
    asyncio.run(reads.answer(("routing",), 3, sized, 3, size=0, name="pad"))  # an old read point
    assert sorted(reads._kept) == [(("digest",), 5), (("routing",), 5)]
    assert asyncio.run(reads.answer(("routing",), 5, sized, 5, size=0, name="pad"))[0] == 5
    assert reads.counts == {"built": 5, "reused": 1}


def test_a_kept_answer_is_forgotten_after_a_while() -> None:
    reads = HeavyReads(keep_for=0.05)

    def body(revision: int) -> dict[str, Any]:
        return {"revision": revision}

    async def scenario() -> tuple[int, int]:
        await reads.answer(("digest",), 1, body, 1, size=0, name="digest")
        kept = len(reads._kept)
        for _ in range(200):  # two seconds at most
            if not reads._kept:
                break
            await asyncio.sleep(0.01)
        return kept, len(reads._kept)

    assert asyncio.run(scenario()) == (1, 0)


def test_a_watch_page_carries_a_bounded_number_of_partitions() -> None:
    state = placed(5)
    feed = ChangeFeed()
    start = state.revision
    for k in range(4):  # four resources of 30 partitions, one revision each
        outcome = apply(state, c.CreateResource(
            name=f"s{k}", partitions=30, replication_factor=3,
            assignment=place_resource(state, f"s{k}", 30, 3)))
        feed.record(outcome.events)
    updated = apply(state, c.UpdateResource(name="s3", replication_factor=2))  # a count, no list
    feed.record(updated.events)
    assert len(feed.since(start)) == 4 + len(updated.events)
    page = feed.since(start, max_partitions=50)
    assert [e.data["name"] for e in page] == ["s0", "s1"]  # stops once 50 are reached
    assert len(feed.since(start, max_partitions=1)) == 1  # a page holds at least a revision
    rest = feed.since(page[-1].revision, max_partitions=50)
    assert [e.data["name"] for e in rest if e.type == "ResourceCreated"] == ["s2", "s3"]
    last = feed.since(rest[-1].revision, max_partitions=50)
    assert [e.type for e in last] == [e.type for e in updated.events]


def test_api_reads_of_a_large_state_answer_as_small_ones_do() -> None:
    with running_cluster() as cluster, httpx.Client(transport=cluster.transport,
                                                    base_url=cluster.url("m1"), timeout=60) as http:
        _reads_of_a_large_state(cluster, http)


def _reads_of_a_large_state(cluster: Any, http: httpx.Client) -> None:
    for k in range(12):
        assert http.post("/v1/nodes", json={"id": f"n{k}", "address": f"10.0.0.{k}:1",
                                            "zone": f"z{k % 3}"}).status_code == 201
    created = http.post("/v1/resources", json={"name": "big", "partitions": 7_000, "replicas": 3})
    assert created.status_code == 201, created.text
    state = cluster.state("m1")
    table = http.get("/v1/routing")
    assert table.status_code == 200
    assert table.json() == json.loads(encode_json(routing(state)))
    assert table.headers["x-hacoord-revision"] == str(state.revision)
    node = http.get("/v1/nodes/n3").json()["node"]
    assert len(node["replicas"]) == sum(p.replicas.count("n3") for p in state.resources["big"].partitions)
    status = http.get("/v1/status", params={"digest": "true"}).json()
    assert status["digest"] == digest(state) and status["revision"] == state.revision
    assert status["health"] == summary(state)  # built in a child: 21,000 replicas
    scraped = http.get("/metrics").text
    assert f'hacoord_partitions{{health="healthy"}} {summary(state)["partitions"]["healthy"]}.0' \
        in scraped
    diff = http.get("/v1/routing/diff", params={"from": created.json()["revision"] - 1}).json()
    assert len(diff["changes"]) == 7_000
