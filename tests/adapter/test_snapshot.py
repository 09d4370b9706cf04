"""Snapshot files (checksummed, compressed, refused when damaged) and the snapshot store (own dumps
written off the loop, received snapshots staged until installed)."""

from __future__ import annotations

import json
import random
import stat
import time
from pathlib import Path

import pytest
from pysyncobj.config import SERIALIZER_STATE

from hacoord.core import ClusterState, codec, encode_state
from hacoord.replication.snapshot import (
    MAGIC,
    NewerSnapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    read_snapshot,
)
from hacoord.replication.snapshot_store import ForkWriter, InlineWriter, SnapshotStore
from tests.unit.scenarios import build_state

RAFT = ((b"x", 5, 2), (b"y", 4, 2), [])


def sample_state() -> ClusterState:
    state = build_state(random.Random(11), 150)
    assert state.nodes and state.resources and state.requests
    return state


def test_round_trip_is_exact_and_stable() -> None:
    state = sample_state()
    raw = encode_snapshot(state, RAFT)
    header, restored = decode_snapshot(raw)
    assert (header.last, header.prev, header.cluster) == ((b"x", 5, 2), (b"y", 4, 2), ())
    assert (header.index, header.term) == (5, 2)
    assert restored == state and encode_state(restored) == encode_state(state)
    assert encode_snapshot(restored, RAFT) == raw  # written again: byte for byte the same
    assert len(raw) < len(encode_state(state)) / 2  # compressed


def test_binary_entries_and_members_survive() -> None:
    class Member:
        def __init__(self, address: str) -> None:
            self.address = address

    raft = ((bytes(range(256)), 10, 3), (b"\x00\xff", 9, 3), [Member("b:2"), Member("a:1")])
    header, _ = decode_snapshot(encode_snapshot(ClusterState(), raft))
    assert header.last == (bytes(range(256)), 10, 3) and header.prev == (b"\x00\xff", 9, 3)
    assert header.cluster == ("a:1", "b:2")


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]


@pytest.mark.parametrize("damage", ["body", "header-index", "digest", "truncated", "extended",
                                    "magic", "empty"])
def test_a_damaged_snapshot_is_refused(damage: str) -> None:
    raw = encode_snapshot(sample_state(), RAFT)
    head_end = raw.index(b"\n", len(MAGIC)) + 1
    if damage == "body":
        bad = _flip(raw, head_end + 10)
    elif damage == "header-index":  # claims another index than the one it was written for
        bad = raw.replace(b',5,2]', b',6,2]', 1)
    elif damage == "digest":
        bad = _flip(raw, len(raw) - 1)
    elif damage == "truncated":
        bad = raw[:-100]
    elif damage == "extended":
        bad = raw + b"\0"
    elif damage == "magic":
        bad = b"X" + raw[1:]
    else:
        bad = b""
    assert bad != raw
    with pytest.raises(SnapshotError):
        decode_snapshot(bad)


def test_a_snapshot_of_an_unknown_schema_is_refused() -> None:
    state = sample_state()
    data = state.to_dict()
    data["schema"] += 1

    class Future:
        def to_dict(self) -> dict:
            return data

    with pytest.raises(NewerSnapshot, match="written by a newer hacoord"):
        decode_snapshot(encode_snapshot(Future(), RAFT))  # type: ignore[arg-type]


def test_format_1_files_of_earlier_releases_are_read_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = sample_state()
    legacy = {"format": "hacoord-snapshot", "version": 1,
              "raft": {"last": ["eA==", 5, 2], "prev": ["eQ==", 4, 2], "cluster": []},
              "state": state.to_dict()}
    path = tmp_path / "raft.snapshot"
    path.write_text(json.dumps(legacy))
    header, restored = read_snapshot(path)
    assert header.last == (b"x", 5, 2) and restored == state
    assert "format-1 snapshot (index 5)" in caplog.text and "no checksum" in caplog.text


# --- the store ----------------------------------------------------------------------------------

def store(tmp_path: Path, state: ClusterState, writer=None) -> SnapshotStore:
    return SnapshotStore(tmp_path / "raft.snapshot", lambda: state, writer or InlineWriter(),
                         chunk_size=1000)


def send_all(sender: SnapshotStore, receiver: SnapshotStore) -> bool:
    for _ in range(10_000):
        chunk = sender.getTransmissionData("peer")
        assert chunk is not None
        if receiver.setTransmissionData(chunk):
            return True
    raise AssertionError("transmission never ended")


def test_own_dump_is_written_0600_and_reported_once(tmp_path: Path) -> None:
    state = sample_state()
    s = store(tmp_path, state)
    assert s.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)
    s.serialize((None, RAFT[0], RAFT[1], RAFT[2]), 4)
    assert s.checkSerializing() == (SERIALIZER_STATE.SUCCESS, 4)
    assert s.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)
    assert stat.S_IMODE(s.path.stat().st_mode) == 0o600
    header, restored = s.load()
    assert header.index == 5 and restored == state and s.header == header


def test_a_received_snapshot_is_staged_beside_the_dump_not_over_it(tmp_path: Path) -> None:
    leader_dir, follower_dir = tmp_path / "leader", tmp_path / "follower"
    leader_dir.mkdir()
    follower_dir.mkdir()
    newer = sample_state()
    leader = store(leader_dir, newer)
    leader.serialize((None, (b"z", 50, 3), (b"w", 49, 3), []), 49)
    leader.checkSerializing()
    mine = ClusterState()
    follower = store(follower_dir, mine)
    follower.serialize((None, RAFT[0], RAFT[1], RAFT[2]), 4)
    follower.checkSerializing()
    own = follower.path.read_bytes()

    assert send_all(leader, follower)
    assert follower.path.read_bytes() == own  # not replaced before it is installed
    header, state = follower.read_received()
    assert header.index == 50 and state == newer
    follower.discard_received()
    assert follower.path.read_bytes() == own and not follower.received_path.exists()

    assert send_all(leader, follower)
    header, _ = follower.read_received(with_state=False)
    follower.install_received(header)
    assert follower.path.read_bytes() == leader.path.read_bytes()
    assert follower.header == header and stat.S_IMODE(follower.path.stat().st_mode) == 0o600


def test_a_chunk_without_its_start_is_ignored(tmp_path: Path) -> None:
    s = store(tmp_path, ClusterState())
    assert s.setTransmissionData((b"middle", False, False)) is False
    assert s.setTransmissionData((b"", False, True)) is False
    assert not s.received_path.exists()


def test_fork_writer_writes_the_state_as_it_was_at_the_fork(tmp_path: Path) -> None:
    state = sample_state()
    expected = encode_state(state)
    s = store(tmp_path, state, ForkWriter())
    s.serialize((None, RAFT[0], RAFT[1], RAFT[2]), 4)
    state.nodes.clear()  # the parent moves on at once; the child keeps its copy
    deadline = time.monotonic() + 30
    result = s.checkSerializing()
    while result[0] == SERIALIZER_STATE.SERIALIZING and time.monotonic() < deadline:
        time.sleep(0.01)
        result = s.checkSerializing()
    assert result == (SERIALIZER_STATE.SUCCESS, 4)
    _, restored = s.load()
    assert encode_state(restored) == expected


def test_fork_writer_failure_is_reported_with_its_reason(tmp_path: Path) -> None:
    s = SnapshotStore(tmp_path / "missing-dir" / "raft.snapshot", ClusterState, ForkWriter())
    s.serialize((None, RAFT[0], RAFT[1], RAFT[2]), 4)
    deadline = time.monotonic() + 30
    result = s.checkSerializing()
    while result[0] == SERIALIZER_STATE.SERIALIZING and time.monotonic() < deadline:
        time.sleep(0.01)
        result = s.checkSerializing()
    assert result == (SERIALIZER_STATE.FAILED, 4)
    assert s.write_failures == 1 and "No such file" in (s.last_error or "")


def test_an_install_stops_a_dump_still_being_written(tmp_path: Path) -> None:
    class Never:
        """A writer whose job never ends on its own."""

        cancelled = False

        def start(self, encode, persist) -> None:
            self.job = (encode, persist)

        def poll(self):
            return None

        def cancel(self) -> None:
            self.cancelled = True

    writer = Never()
    s = store(tmp_path, ClusterState(), writer)
    s.serialize((None, RAFT[0], RAFT[1], RAFT[2]), 4)
    assert s.checkSerializing() == (SERIALIZER_STATE.SERIALIZING, 4)
    s.received_path.write_bytes(encode_snapshot(sample_state(), ((b"z", 9, 3), (b"w", 8, 3), [])))
    header, _ = s.read_received(with_state=False)
    s.install_received(header)
    assert writer.cancelled and s.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)
    assert read_snapshot(s.path, with_state=False)[0].index == 9


def test_a_state_is_parsed_in_pieces_down_to_each_partition_and_each_remembered_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the C parser is handed at once, decoding a snapshot's state: one partition, one
    node, one remembered request, never a whole resource or the whole request memory (the GIL
    is held for each piece; a follower decodes a received snapshot while its loop serves)."""
    state = sample_state()
    raw = encode_snapshot(state, RAFT)
    pieces: list[object] = []
    decode = codec._DECODER.raw_decode

    def noted(text: str, at: int) -> tuple[object, int]:
        value, end = decode(text, at)
        pieces.append(value)
        return value, end

    monkeypatch.setattr(codec._DECODER, "raw_decode", noted)
    assert decode_snapshot(raw)[1] == state
    data = state.to_dict()
    partitions = [p for resource in data["resources"] for p in resource["partitions"]]
    assert partitions and all(p in pieces for p in partitions)
    assert data["requests"] and all(list(r) in pieces for r in data["requests"])
    assert data["nodes"] and all(n in pieces for n in data["nodes"])
    assert data["requests"] not in pieces and data["resources"] not in pieces
