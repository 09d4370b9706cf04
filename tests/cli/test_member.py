"""``hacoord member rejoin``: moves a stopped member's files aside, or says in one line why not."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from hacoord.cli.main import main
from hacoord.replication.journal import MAGIC
from hacoord.replication.rejoin import member_lock


def member_dir(tmp_path: Path) -> Path:
    (tmp_path / "raft.journal").write_bytes(MAGIC)
    (tmp_path / "raft.snapshot").write_bytes(b"snapshot")
    (tmp_path / "raft.journal.meta").write_text(json.dumps({"term": 7, "voted_for": "m2",
                                                            "commit_index": 40}))
    return tmp_path


def test_rejoin_moves_the_files_aside_and_keeps_the_vote(tmp_path: Path) -> None:
    data = member_dir(tmp_path)
    result = CliRunner().invoke(main, ["member", "rejoin", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "catches up from the other members" in result.output
    aside = next(data.glob("rejoin-*"))
    assert sorted(p.name for p in aside.iterdir()) == ["raft.journal", "raft.journal.meta",
                                                       "raft.snapshot"]
    assert json.loads((data / "raft.journal.meta").read_text()) == {
        "term": 7, "voted_for": "m2", "rejoining": True}
    assert not (data / "raft.journal").exists()


def test_rejoin_refuses_a_running_member_in_one_line(tmp_path: Path) -> None:
    data = member_dir(tmp_path)
    lock = member_lock(data)
    try:
        result = CliRunner().invoke(main, ["member", "rejoin", "--data-dir", str(data)])
    finally:
        os.close(lock)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "stop it first" in result.output
    assert (data / "raft.journal").exists()  # nothing moved


def test_rejoin_of_an_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["member", "rejoin", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "holds no member data" in result.output
