"""The cluster id in the state, the backup file format, and restoring a member's data from it."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.core.backup import MAGIC, BackupError, decode_backup, encode_backup, read_header
from hacoord.core.codec import canonical_json, digest
from hacoord.core.framing import frame
from hacoord.replication.driver import JOURNAL_FILE, SNAPSHOT_FILE
from hacoord.replication.journal import HacoordJournal
from hacoord.replication.restore import RestoreError, restore
from hacoord.replication.snapshot import read_snapshot


def populated() -> ClusterState:
    state = ClusterState()
    for k in range(3):
        assert apply(state, c.RegisterNode(node_id=f"n{k}", address=f"10.0.0.{k}:9000",
                                           zone=f"z{k}", time=1.0)).ok
    assert apply(state, c.CreateResource(name="orders", partitions=4, replication_factor=2,
                                         time=2.0, assignment=[["n0", "n1"], ["n1", "n2"], ["n2", "n0"],
                                                      ["n0", "n2"]])).ok
    assert apply(state, c.SetClusterId(cluster_id="source-1")).ok
    return state


def test_the_cluster_is_named_once_and_the_name_is_not_data() -> None:
    state = populated()
    revision, before = state.revision, digest(state)
    refused = apply(state, c.SetClusterId(cluster_id="other"))
    assert not refused.ok and refused.code == "already_exists" and state.cluster_id == "source-1"
    fresh = ClusterState()
    assert apply(fresh, c.SetClusterId(cluster_id="bad id!")).code == "invalid_argument"
    assert apply(fresh, c.SetClusterId(cluster_id="x1", time=9.0)).ok
    assert (fresh.revision, fresh.last_time) == (0, 0.0)  # not data: members of any release agree
    renamed = ClusterState.from_dict(state.to_dict())
    renamed.cluster_id = "copy"
    assert state.revision == revision and digest(renamed) == before
    assert ClusterState.from_dict(state.to_dict()).cluster_id == "source-1"


def test_a_backup_round_trips_and_names_what_it_holds() -> None:
    state = populated()
    header, restored = decode_backup(encode_backup(state))
    assert (header.revision, header.cluster_id, header.digest) == (
        state.revision, "source-1", digest(state))
    assert restored.to_dict() == state.to_dict()


@pytest.mark.parametrize("damage", ["flip", "truncate", "other-file"])
def test_a_damaged_backup_is_refused(damage: str) -> None:
    raw = bytearray(encode_backup(populated()))
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        del raw[-10:]
    else:
        raw = bytearray(b"HACOORD-SNAPSHOT-2\n" + bytes(raw[len(MAGIC):]))
    with pytest.raises(BackupError):
        decode_backup(bytes(raw))


def test_a_backup_of_a_newer_schema_is_refused_with_a_message_that_says_so() -> None:
    data = populated().to_dict()
    data["schema"] = 99
    body = zlib.compress(canonical_json(data))
    raw = frame(MAGIC, {"format": 1, "codec": "zlib", "schema": 99, "revision": 1,
                        "cluster_id": "x", "digest": "d", "time": 0.0}, body)
    with pytest.raises(BackupError, match="newer hacoord"):
        read_header(raw)


def test_restore_builds_a_member_that_starts_in_the_states_term(tmp_path: Path) -> None:
    state = populated()
    state.leader_term = 7
    done = restore(encode_backup(state), tmp_path / "m1")
    assert done.cluster_id.endswith("-" + digest(state)[:12]) and (done.index, done.term) == (2, 7)
    assert restore(encode_backup(state), tmp_path / "m2", done.cluster_id).cluster_id == done.cluster_id
    header, restored = read_snapshot(tmp_path / "m1" / SNAPSHOT_FILE)
    assert restored is not None and restored.cluster_id == done.cluster_id
    assert digest(restored) == digest(state) and header.index == 2 and header.term == 7
    journal = HacoordJournal(str(tmp_path / "m1" / JOURNAL_FILE), durable=False)
    try:
        assert journal.getCurrentTerm() == 7 and journal.opened_last_index == 2
    finally:
        journal.abandon()
    assert (tmp_path / "m1").stat().st_mode & 0o077 == 0
    with pytest.raises(RestoreError, match="already holds member data"):
        restore(encode_backup(state), tmp_path / "m1", done.cluster_id)
    with pytest.raises(RestoreError, match="malformed cluster id"):
        restore(encode_backup(state), tmp_path / "m3", "no spaces")
    other = populated()
    assert apply(other, c.RegisterNode(node_id="extra", address="10.0.9.9:1", time=5.0)).ok
    with pytest.raises(RestoreError, match="was not made from this backup"):
        restore(encode_backup(other), tmp_path / "m3", done.cluster_id)
    with pytest.raises(RestoreError, match="not a usable hacoord backup"):
        restore(b"garbage", tmp_path / "m3")
    assert not (tmp_path / "m3").exists()
