"""Backup and restore across real members, and the cluster id that keeps a restored copy apart:

* a backup taken through a follower holds every acknowledged write; a new cluster restored from it
  (every member from the same file) has the source's state at the backup's revision (same digest,
  same routing), its own cluster id, and takes writes, leader-only decisions included;
* a client holding the source's id refuses the copy's members;
* a member restored into the source cluster's place (same addresses, same secret) is refused on
  the peer port by the source's members, and the source goes on without it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.client import UnavailableError, WrongCluster
from hacoord.core import ClusterState
from hacoord.core.backup import encode_backup, read_header
from hacoord.core.codec import canonical_json
from hacoord.core.framing import frame, unframe
from hacoord.replication.driver import SNAPSHOT_FILE
from hacoord.replication.restore import restore
from hacoord.replication.snapshot import MAGIC as SNAPSHOT_MAGIC
from hacoord.testing.cluster import LocalCluster, running_cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def source(tmp_path: Path) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path / "source") as made:
        made.leader()
        yield made


def cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hacoord", "--endpoints",
                           ",".join(cluster.endpoints), *args], env=cluster.env(),
                          capture_output=True, text=True, timeout=60)


def fill(cluster: LocalCluster) -> None:
    with cluster.client(timeout=2.0, deadline=20.0) as client:
        for k in range(4):
            client.node_add(f"n{k}", address=f"127.0.0.1:{9100 + k}", zone=f"z{k % 2}")
        client.resource_create("orders", partitions=8, replicas=2)
        client.token_create("dashboard", "reader")


def _cluster_id(cluster: LocalCluster) -> str | None:
    ids = {m.get("/v1/status").get("cluster_id") for m in cluster.members.values() if m.alive()}
    return ids.pop() if len(ids) == 1 and None not in ids else None


def restore_cli(backup: Path, data_dir: Path, cluster_id: str | None = None) -> str:
    """``hacoord restore`` into ``data_dir``; the cluster id it names."""
    named = ("--cluster-id", cluster_id) if cluster_id else ()
    done = subprocess.run([sys.executable, "-m", "hacoord", "--json", "restore", str(backup),
                           "--data-dir", str(data_dir), *named],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["cluster_id"])


def restore_all(backup: Path, cluster: LocalCluster) -> str:
    """Every member of ``cluster`` restored from ``backup``; the new cluster's id."""
    first, *others = cluster.members.values()
    cluster_id = restore_cli(backup, first.data_dir)
    for member in others:
        assert restore_cli(backup, member.data_dir, cluster_id) == cluster_id
    return cluster_id


def test_a_restored_cluster_has_the_sources_state_and_its_own_id(source: LocalCluster,
                                                                 tmp_path: Path) -> None:
    fill(source)
    source_id = _wait_named(source)
    follower = next(m for m in source.members.values() if m.id != source.leader())
    backup = tmp_path / "backup.hcb"
    taken = subprocess.run([sys.executable, "-m", "hacoord", "--endpoints", follower.url, "--json",
                            "backup", str(backup)], env=source.env(), capture_output=True,
                           text=True, timeout=60)
    assert taken.returncode == 0, taken.stderr
    assert backup.stat().st_mode & 0o077 == 0
    header, _ = read_header(backup.read_bytes())
    with source.client() as client:
        routing = client.routing(consistent=True)
    assert header.cluster_id == source_id and header.revision == routing.revision
    digest = source.members["m1"].get("/v1/status?digest=true")
    assert digest["revision"] == header.revision and digest["digest"] == header.digest

    # The copy: its own secret and addresses, the source's tokens (they are in the state).
    copy_root = tmp_path / "copy"
    copy_root.mkdir()
    shutil.copy(source.token_file, copy_root / source.token_file.name)
    with running_cluster(copy_root) as copy:
        copy.stop_all()
        copy_id = restore_all(backup, copy)
        copy.start()
        copy.leader()
        assert _wait_named(copy) == copy_id and copy_id.endswith(header.digest[:12])
        states = {m.id: m.get("/v1/status?digest=true") for m in copy.members.values()}
        assert {(s["revision"], s["digest"]) for s in states.values()} == {
            (header.revision, header.digest)}
        with copy.client(timeout=2.0, deadline=20.0) as client:
            assert client.routing(consistent=True).partitions == routing.partitions
            assert {t.name for t in client.token_list()} >= {"admin", "dashboard"}
            client.node_add("n9", address="127.0.0.1:9199", zone="z1")
            moved = client.partition_move("orders", 0, routing.partitions[0].replicas[0], "n9")
            assert moved.revision > header.revision
        # The source's clients refuse the copy.
        with copy.client(cluster_id=source_id, deadline=3.0) as wrong:
            with pytest.raises(UnavailableError) as caught:
                wrong.node_list()
            assert isinstance(caught.value.cause, WrongCluster)


def _wait_named(cluster: LocalCluster) -> str:
    return wait_for("the cluster named on every live member", lambda: _cluster_id(cluster))


def test_a_member_of_a_restored_copy_cannot_join_the_source(source: LocalCluster,
                                                            tmp_path: Path) -> None:
    fill(source)
    source_id = _wait_named(source)
    backup = tmp_path / "backup.hcb"
    assert cli(source, "backup", str(backup)).returncode == 0
    leader = source.leader()
    victim = next(m for m in source.members.values() if m.id != leader)
    source.kill(victim.id, signal.SIGKILL)
    shutil.move(victim.data_dir, tmp_path / "old-data")
    elsewhere = restore_cli(backup, victim.data_dir)
    source.start(victim.id)
    wait_for("the source refusing the restored member", lambda: f"belongs to cluster '{elsewhere}'"
             in source.logs())
    with source.client(timeout=2.0, deadline=20.0) as client:
        written = client.node_add("late", address="127.0.0.1:9300")
    alone = wait_for("the restored member's API", lambda: victim.get("/v1/status"))
    assert alone["cluster_id"] == elsewhere and alone["leader"] is None
    assert alone["revision"] < written.revision
    assert _cluster_id_of_others(source, victim.id) == {source_id}


def _cluster_id_of_others(cluster: LocalCluster, but: str) -> set[str]:
    return {m.get("/v1/status")["cluster_id"] for m in cluster.members.values() if m.id != but}


def test_a_member_refuses_state_written_by_a_newer_release(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "newer", size=1)
    member = cluster.members["m1"]
    state = ClusterState()
    state.revision = 3
    assert restore(encode_backup(state), member.data_dir).index == 2
    dump = member.data_dir / SNAPSHOT_FILE
    header, body = unframe(dump.read_bytes(), SNAPSHOT_MAGIC)
    data = json.loads(zlib.decompress(body))
    data["schema"] = 99
    header.pop("body_bytes")
    dump.write_bytes(frame(SNAPSHOT_MAGIC, header, zlib.compress(canonical_json(data))))
    cluster.start()
    assert member.proc is not None and member.proc.wait(timeout=60) == 1
    critical = [line for line in member.log_path.read_text().splitlines() if "CRITICAL" in line]
    assert len(critical) == 1 and "written by a newer hacoord" in critical[0], critical
    assert "Traceback" not in member.log_path.read_text()
