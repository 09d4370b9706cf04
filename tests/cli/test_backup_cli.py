"""``hacoord backup`` and ``hacoord restore``: the file written (0600, a usable backup), the
restored directory, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hacoord.cli.main import main
from hacoord.core.backup import decode_backup
from hacoord.replication.driver import SNAPSHOT_FILE
from hacoord.testing.inprocess import InProcessCluster
from tests.cli.test_tokens_cli import one_error_line, runner_for


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(1) as running:
        yield running


def test_backup_then_restore(cluster: InProcessCluster, tmp_path: Path) -> None:
    run = runner_for(cluster)
    assert run("node", "add", "n1", "--address", "10.0.0.1:9000").exit_code == 0
    target = tmp_path / "b.backup"
    taken = run("--json", "backup", str(target))
    assert taken.exit_code == 0, taken.output
    summary = json.loads(taken.stdout)
    header, state = decode_backup(target.read_bytes())
    assert summary["revision"] == header.revision == state.revision >= 1 and "n1" in state.nodes
    assert target.stat().st_mode & 0o077 == 0 and summary["bytes"] == target.stat().st_size
    one_error_line(run("backup", str(target)), 2, "exists")
    assert run("backup", "--force", str(target)).exit_code == 0

    restored = CliRunner().invoke(main, ["restore", str(target), "--data-dir",
                                               str(tmp_path / "m1")])
    assert restored.exit_code == 0 and f"-{header.digest[:12]}; restore the other" in restored.stdout
    assert (tmp_path / "m1" / SNAPSHOT_FILE).exists()
    one_error_line(CliRunner().invoke(main, ["restore", str(target), "--data-dir",
                                                   str(tmp_path / "m1")]), 2, "already holds")


@pytest.mark.parametrize(("content", "fragment"), [
    (b"not a backup", "not a usable hacoord backup"),
    (b"", "not a usable hacoord backup"),
])
def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, content: bytes, fragment: str) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["restore", str(bad), "--data-dir", str(tmp_path / "d")])
    one_error_line(result, 2, fragment)
    assert not (tmp_path / "d").exists()


def test_restore_refuses_a_malformed_cluster_id(tmp_path: Path) -> None:
    bad = tmp_path / "b"
    bad.write_bytes(b"x")
    result = CliRunner().invoke(main, ["restore", str(bad), "--data-dir", str(tmp_path / "d"),
                                             "--cluster-id", "has space"])
    one_error_line(result, 2, "malformed cluster id")

