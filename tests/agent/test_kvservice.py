"""The example kv node's logic without processes: fencing, roles, replication to the replica being
added, and merging a copy with the writes replicated meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from hacoord.agent import Assignment, Role
from hacoord.client import PartitionRoute
from hacoord.examples.kvhttp import KVCallError
from hacoord.examples.kvservice import KVError, KVService
from hacoord.examples.kvstore import Entry, PartitionData, partition_for


class FakePeers:
    """Records replicated writes; answers with ``refusals[node]`` if set; dumps ``dump_entries``."""

    def __init__(self) -> None:
        self.replicated: list[tuple[str, int, str, Entry]] = []
        self.refusals: dict[str, KVCallError] = {}
        self.dump_entries: dict[str, Entry] = {}
        self.dumped_from: list[tuple[str, int]] = []

    def replicate(self, address: str, resource: str, partition: int, epoch: int, key: str,
                  entry: Entry) -> None:
        node = address.split(":")[0]
        if node in self.refusals:
            raise self.refusals[node]
        self.replicated.append((node, epoch, key, entry))

    def dump(self, address: str, resource: str, partition: int, epoch: int) -> dict[str, Entry]:
        self.dumped_from.append((address.split(":")[0], epoch))
        return dict(self.dump_entries)


def assignment(node: str, epoch: int, replicas: tuple[str, ...], leader: str,
               adding: tuple[str, ...] = (), partition: int = 0) -> Assignment:
    route = PartitionRoute("kv", partition, replicas, leader, epoch, adding)
    role = (Role.LEADER if leader == node else Role.FOLLOWER) if node in replicas else Role.CATCHING_UP
    return Assignment("kv", partition, epoch, role, route, held_since=1)


def service(node: str, peers: FakePeers) -> KVService:
    kv = KVService(node, peers)  # type: ignore[arg-type]
    kv.bind(lambda other: f"{other}:1")
    return kv


def refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(KVError) as caught:
        call()
    return caught.value.status, caught.value.code


def test_the_leader_writes_every_replica_and_the_one_being_added() -> None:
    peers = FakePeers()
    kv = service("a", peers)
    kv.on_assign(assignment("a", 4, ("a", "b", "c"), "a", adding=("d",)))
    entry = kv.put("kv", 0, "k", "v1", 4)
    assert entry == Entry("v1", (4, 1))
    assert [(node, epoch, key) for node, epoch, key, _ in peers.replicated] == [
        ("b", 4, "k"), ("c", 4, "k"), ("d", 4, "k")]
    assert kv.get("kv", 0, "k", 4) == entry
    assert kv.put("kv", 0, "k", "v2", 4).version == (4, 2)


def test_a_write_not_taken_by_a_replica_is_not_acknowledged_unless_the_added_one_was_not_told_yet() -> None:
    peers = FakePeers()
    kv = service("a", peers)
    kv.on_assign(assignment("a", 4, ("a", "b"), "a", adding=("d",)))
    peers.refusals["d"] = KVCallError(421, "not_held", "d does not hold kv/0")
    kv.put("kv", 0, "k", "v", 4)  # d copies from the leader once told, and gets it then
    peers.refusals["d"] = KVCallError(0, "unreachable", "refused")
    assert refusal(lambda: kv.put("kv", 0, "k", "v", 4)) == (503, "replication_failed")
    peers.refusals = {"b": KVCallError(421, "not_held", "b does not hold kv/0")}
    assert refusal(lambda: kv.put("kv", 0, "k", "v", 4)) == (503, "replication_failed")


def test_requests_are_fenced_by_epoch_and_served_only_in_the_right_role() -> None:
    kv = service("b", FakePeers())
    assert refusal(lambda: kv.get("kv", 0, "k", 1)) == (421, "not_held")
    kv.on_assign(assignment("b", 5, ("a", "b"), "a"))
    assert refusal(lambda: kv.get("kv", 0, "k", 4)) == (409, "stale_epoch")
    assert refusal(lambda: kv.get("kv", 0, "k", 6)) == (503, "epoch_ahead")
    assert refusal(lambda: kv.get("kv", 0, "k", 5)) == (404, "no_such_key")
    assert refusal(lambda: kv.put("kv", 0, "k", "v", 5)) == (421, "not_leader")
    kv.replicate("kv", 0, 5, "k", Entry("v", (5, 1)))
    assert kv.get("kv", 0, "k", 5).value == "v"
    assert refusal(lambda: kv.replicate("kv", 0, 4, "k", Entry("old", (4, 9)))) == (409, "stale_epoch")
    kv.on_release("kv", 0)
    assert refusal(lambda: kv.get("kv", 0, "k", 5)) == (421, "not_held")
    assert refusal(lambda: kv.get("kv", 0, "k", 4)) == (409, "stale_epoch")  # still known stale


def test_a_copy_merges_with_writes_replicated_meanwhile_newest_version_winning() -> None:
    peers = FakePeers()
    kv = service("d", peers)
    kv.on_assign(assignment("d", 7, ("a", "b"), "a", adding=("d",)))
    assert refusal(lambda: kv.get("kv", 0, "x", 7)) == (421, "not_serving")  # catching up
    kv.replicate("kv", 0, 7, "x", Entry("new", (7, 3)))  # arrived before the copy
    peers.dump_entries = {"x": Entry("old", (6, 9)), "y": Entry("y", (6, 2))}
    kv.catch_up(assignment("d", 7, ("a", "b"), "a", adding=("d",)))
    assert peers.dumped_from == [("a", 7)]
    kv.on_assign(assignment("d", 8, ("a", "d"), "a"))  # the move completed
    assert (kv.get("kv", 0, "x", 8).value, kv.get("kv", 0, "y", 8).value) == ("new", "y")
    assert kv.metrics() == {"kv_partitions": 1.0, "kv_keys": 2.0}


def test_partition_data_keeps_the_newest_version_and_keys_hash_stably() -> None:
    data = PartitionData()
    assert data.merge("k", Entry("b", (2, 1)))
    assert not data.merge("k", Entry("a", (1, 9)))
    assert not data.merge("k", Entry("same", (2, 1)))
    assert data.merge_all({"k": Entry("c", (2, 2)), "j": Entry("j", (1, 1))}) == 2
    assert data.dump() == {"k": Entry("c", (2, 2)), "j": Entry("j", (1, 1))}
    # CRC-32, so every process (and every client) agrees: crc32(b"user:1") = 2074460802.
    assert [partition_for(key, 8) for key in ("user:1", "a", "b")] == [2, 3, 1]
    with pytest.raises(ValueError):
        partition_for("k", 0)
