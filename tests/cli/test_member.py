"""``hacoord member``: ``list`` shows the coordinator's members; ``rejoin`` moves a stopped
member's files aside, or says in one line why not; ``secret`` and ``certs`` make what a new
cluster's members are started with."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from click.testing import CliRunner, Result
from cryptography import x509

from hacoord.cli.main import main
from hacoord.replication.journal import MAGIC
from hacoord.replication.rejoin import member_lock
from hacoord.testing.inprocess import InProcessCluster
from tests.cli.test_tokens_cli import runner_for


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
    assert "--force" in result.output and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_rejoin_force_marks_a_member_whose_data_was_lost(tmp_path: Path) -> None:
    """The data directory was removed while the member ran (it stopped, naming this command):
    with --force the directory is made again and the member marked rejoining, so that it votes
    for nobody until it has caught up."""
    data = tmp_path / "gone"
    result = CliRunner().invoke(main, ["member", "rejoin", "--data-dir", str(data), "--force"])
    assert result.exit_code == 0, result.output
    assert "whose data was lost, as rejoining" in result.output
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert sorted(p.name for p in data.iterdir()) == ["member.lock", "raft.journal.meta"]
    assert json.loads((data / "raft.journal.meta").read_text()) == {
        "term": 0, "voted_for": None, "rejoining": True}


def test_member_secret_writes_a_private_secret_once(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    made = CliRunner().invoke(main, ["member", "secret", str(path)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().strip()) >= 32
    before = path.read_text()
    again = CliRunner().invoke(main, ["member", "secret", str(path)])
    assert again.exit_code == 2 and "never overwritten" in again.output
    assert len(again.output.strip().splitlines()) == 1 and path.read_text() == before


def test_member_certs_makes_a_ca_once_and_a_certificate_for_the_member_s_names(tmp_path: Path) -> None:
    def certs(member: str, *hosts: str) -> Result:
        args = ["member", "certs", "--ca-dir", str(tmp_path / "ca"), "--out", str(tmp_path / member),
                "--id", member]
        for host in hosts:
            args += ["--host", host]
        return CliRunner().invoke(main, args)

    assert certs("m1", "m1", "10.0.0.1").exit_code == 0
    ca = (tmp_path / "ca" / "ca.pem").read_bytes()
    assert certs("m2", "m2").exit_code == 0
    assert (tmp_path / "ca" / "ca.pem").read_bytes() == ca  # one CA for the cluster
    cert = x509.load_pem_x509_certificate((tmp_path / "m1" / "tls.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["m1"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert stat.S_IMODE((tmp_path / "m1" / "tls.key").stat().st_mode) == 0o600
    missing = CliRunner().invoke(main, ["member", "certs", "--ca-dir", str(tmp_path / "ca"),
                                        "--out", str(tmp_path / "m3"), "--id", "m3"])
    assert missing.exit_code == 2 and "--host" in missing.output


def test_member_list_shows_every_member_and_the_leader() -> None:
    with InProcessCluster(3, leader="m3") as cluster:
        run = runner_for(cluster)
        shown = run("member", "list")
        assert shown.exit_code == 0, shown.output
        rows = [line.split() for line in shown.output.splitlines()]
        assert rows[0] == ["ID", "API", "RAFT", "LEADER"]
        assert rows[1:] == [["m1", "http://m1.test", "127.0.0.1:7501"],
                            ["m2", "http://m2.test", "127.0.0.1:7502"],
                            ["m3", "http://m3.test", "127.0.0.1:7503", "*"]]
        listed = run("member", "list", "--json")
        assert [m["id"] for m in json.loads(listed.output) if m["leader"]] == ["m3"]


def test_rejoin_force_refuses_a_directory_that_is_no_member_s(tmp_path: Path) -> None:
    """--force makes a rejoining member only in an empty or new directory: a mistyped path to
    some other directory is not chmod'ed nor written to."""
    (tmp_path / "notes.txt").write_text("mine")
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    result = CliRunner().invoke(main, ["member", "rejoin", "--data-dir", str(tmp_path), "--force"])
    assert result.exit_code == 2 and "not a member's data directory" in result.output
    assert result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert stat.S_IMODE(tmp_path.stat().st_mode) == mode


def test_rejoin_of_a_directory_holding_only_the_vote_record_keeps_the_vote(tmp_path: Path) -> None:
    """What a member whose directory was removed may leave in the new one: a vote record written
    just before it noticed. Rejoined without --force, its term and vote are kept."""
    (tmp_path / "raft.journal.meta").write_text(json.dumps({"term": 9, "voted_for": "m3",
                                                            "commit_index": 12}))
    result = CliRunner().invoke(main, ["member", "rejoin", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "raft.journal.meta").read_text()) == {
        "term": 9, "voted_for": "m3", "rejoining": True}


def test_member_add_and_remove_change_the_membership_and_say_so() -> None:
    with InProcessCluster(3, leader="m3") as cluster:
        run = runner_for(cluster)
        added = run("member", "add", "m4", "--raft", "127.0.0.1:7504", "--api", "http://m4.test")
        assert added.exit_code == 0, added.output
        assert added.output.splitlines()[0] == "added m4; it catches up from the leader now"
        assert ["m4", "http://m4.test", "127.0.0.1:7504"] in [
            line.split() for line in added.output.splitlines()]
        again = run("member", "add", "m4", "--raft", "127.0.0.1:7504", "--api", "http://m4.test",
                    "--json")
        assert again.exit_code == 0, again.output
        document = json.loads(again.output)
        assert document["changed"] is False and len(document["members"]) == 4
        clash = run("member", "add", "m5", "--raft", "127.0.0.1:7504", "--api", "http://m5.test")
        assert clash.exit_code == 2 and "m4 already uses that address" in clash.output
        assert clash.output.count("\n") == 1
        bad = run("member", "add", "m5", "--raft", "127.0.0.1:7505", "--api", "m5.test")
        assert bad.exit_code == 2 and "api_url" in bad.output and bad.output.count("\n") == 1
        removed = run("member", "remove", "m4")
        assert removed.exit_code == 0, removed.output
        assert removed.output.splitlines()[0] == "removed m4; stop its process now"
        assert "m4" not in removed.output.split("\n", 1)[1]
        gone = run("member", "remove", "m4")
        assert gone.exit_code == 0 and gone.output.startswith("m4 is not a member")
