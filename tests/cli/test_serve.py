"""``hacoord serve`` settings: precedence (flag > env > TOML > default) and clear refusals."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

import hacoord.server.member as member_module
from hacoord.cli.main import main
from hacoord.server.certs import member_tls
from hacoord.server.settings import MemberSettings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[MemberSettings]:
    """Replace the member runner: record the settings serve would run with, exit 0."""
    seen: list[MemberSettings] = []

    async def fake_serve(settings: MemberSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(member_module, "serve_member", fake_serve)
    return seen


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("s" * 32)
    return path


def serve(*args: str, env: dict[str, Any] | None = None) -> Result:
    clean = {k: None for k in os.environ if k.startswith("HACOORD_")}
    return CliRunner().invoke(main, ["serve", *args], env={**clean, **(env or {})})


def one_error_line(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


BASE = ["--member-id", "m1", "--raft-address", "127.0.0.1:7501", "--api-address", "127.0.0.1:7401",
        "--plain-http"]


def test_flags_beat_env_which_beat_toml(tmp_path: Path, secret: Path,
                                        captured: list[MemberSettings]) -> None:
    toml = tmp_path / "member.toml"
    toml.write_text(f"""
member_id = "from-toml"
raft_address = "127.0.0.1:7601"
api_address = "127.0.0.1:7602"
data_dir = "{tmp_path / 'toml-data'}"
secret_file = "{secret}"
submit_timeout = 9.0
plain_http = true

[[peers]]
id = "m2"
raft_address = "127.0.0.1:7502"
api_url = "http://127.0.0.1:7402"
""")
    result = serve("--config", str(toml), "--member-id", "from-flag",
                   env={"HACOORD_MEMBER_ID": "from-env", "HACOORD_API_ADDRESS": "127.0.0.1:7700"})
    assert result.exit_code == 0, (result.output, result.exception)
    settings = captured[0]
    assert settings.member_id == "from-flag"                 # flag over env and TOML
    assert settings.api_address == "127.0.0.1:7700"          # env over TOML
    assert settings.raft_address == "127.0.0.1:7601"         # TOML over default
    assert settings.submit_timeout == 9.0
    assert settings.data_dir == tmp_path / "toml-data"
    assert [p.id for p in settings.peers] == ["m2"]
    assert settings.members()["m2"].api_url == "http://127.0.0.1:7402"


def test_peers_from_environment_are_space_separated(tmp_path: Path, secret: Path,
                                                    captured: list[MemberSettings]) -> None:
    peers = "m2=127.0.0.1:7502,http://127.0.0.1:7402 m3=127.0.0.1:7503,http://127.0.0.1:7403"
    result = serve(*BASE, "--data-dir", str(tmp_path), "--secret-file", str(secret),
                   env={"HACOORD_PEERS": peers})
    assert result.exit_code == 0, result.output
    assert [p.id for p in captured[0].peers] == ["m2", "m3"]


def test_the_peer_list_may_name_this_member_as_it_is(tmp_path: Path, secret: Path,
                                                     captured: list[MemberSettings]) -> None:
    peers = ("m1=127.0.0.1:7501,http://127.0.0.1:7401 m2=127.0.0.1:7502,http://127.0.0.1:7402 "
             "m3=127.0.0.1:7503,http://127.0.0.1:7403")
    result = serve(*BASE, "--data-dir", str(tmp_path), "--secret-file", str(secret),
                   env={"HACOORD_PEERS": peers})
    assert result.exit_code == 0, result.output
    assert [p.id for p in captured[0].peers] == ["m2", "m3"]
    assert sorted(captured[0].members()) == ["m1", "m2", "m3"]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--member-id", "m1"], "raft_address: required"),
    ([*BASE, "--data-dir", "d"], "secret_file"),
    ([*BASE, "--data-dir", "d", "--insecure", "--raft-address", "10.1.2.3:7501"],
     "insecure: refused"),
    (["--member-id", "bad id!", "--raft-address", "127.0.0.1:1", "--api-address", "127.0.0.1:2",
      "--data-dir", "d", "--insecure"], "member_id"),
    ([*BASE, "--data-dir", "d", "--insecure", "--peer", "m2"], "peer: expected ID=RAFT_HOST:PORT,API_URL"),
    ([*BASE, "--data-dir", "d", "--insecure", "--peer", "m1=127.0.0.1:1,http://x"],
     "peer: m1 is this member, listed at 127.0.0.1:1,http://x but it is 127.0.0.1:7501"),
    ([*BASE, "--data-dir", "d", "--insecure", "--peer", "m2=127.0.0.1:1,http://x",
      "--peer", "m2=127.0.0.1:2,http://y"], "peer: member ids"),
    ([*BASE, "--data-dir", "d", "--insecure", "--election-timeout-min", "2"], "election_timeout_min"),
    ([*BASE, "--data-dir", "d", "--insecure", "--submit-timeout", "nan"], "submit_timeout: must be"),
    ([*BASE, "--data-dir", "d", "--insecure", "--submit-timeout", "0"], "submit_timeout: must be"),
    ([*BASE, "--data-dir", "d", "--insecure", "--down-after", "inf"], "down_after: must be"),
    ([*BASE, "--data-dir", "d", "--insecure", "--suspect-after", "-1"], "suspect_after: must be"),
    ([*BASE, "--data-dir", "d", "--insecure", "--election-timeout-max", "1e9"],
     "election_timeout_max: must be"),
    ([*BASE, "--data-dir", "d", "--insecure", "--log-compaction-min-entries", "1"],
     "log_compaction_min_entries"),
])
def test_bad_settings_are_one_line_naming_the_key(args: list[str], fragment: str,
                                                 captured: list[MemberSettings]) -> None:
    one_error_line(serve(*args), fragment)
    assert captured == []


def test_secret_readable_by_others_is_refused(tmp_path: Path, captured: list[MemberSettings]) -> None:
    loose = tmp_path / "secret"
    loose.write_text("s" * 32)
    loose.chmod(0o644)
    one_error_line(serve(*BASE, "--data-dir", str(tmp_path), "--secret-file", str(loose)), "chmod 600")
    assert captured == []


@pytest.mark.parametrize(("extra", "fragment"), [
    ([], "tls_cert: the API is served over HTTPS"),
    (["--api-address", "10.1.2.3:7401"], "plain_http: refused: api_address 10.1.2.3"),
    (["--tls-cert", "c.pem"], "tls_key: HTTPS needs both"),
    (["--tls-key", "k.pem"], "tls_cert: HTTPS needs both"),
    (["--tls-client-ca", "ca.pem"], "tls_client_ca: mutual TLS needs"),
    (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], "tls_cert: cannot read"),
])
def test_the_api_is_https_unless_plain_http_is_asked_for_on_loopback(
        extra: list[str], fragment: str, tmp_path: Path, secret: Path,
        captured: list[MemberSettings]) -> None:
    base = [arg for arg in BASE if arg != "--plain-http"]
    plain = ["--plain-http"] if extra[:1] == ["--api-address"] else []
    one_error_line(serve(*base, "--data-dir", str(tmp_path), "--secret-file", str(secret),
                         *plain, *extra), fragment)
    assert captured == []


def test_the_benchmarks_open_api_needs_plain_http_on_loopback(tmp_path: Path, secret: Path,
                                                               captured: list[MemberSettings]) -> None:
    tls = member_tls(tmp_path / "pki", "m1", "127.0.0.1")
    base = [arg for arg in BASE if arg != "--plain-http"]
    common = [*base, "--data-dir", str(tmp_path), "--secret-file", str(secret), "--unsafe-no-auth"]
    one_error_line(serve(*common, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)),
                   "unsafe_no_auth: only with --plain-http")
    assert captured == []
    assert serve(*common, "--plain-http").exit_code == 0 and captured[0].unsafe_no_auth


def test_https_settings_are_taken(tmp_path: Path, secret: Path,
                                  captured: list[MemberSettings]) -> None:
    tls = member_tls(tmp_path / "pki", "m1", "127.0.0.1")
    base = [arg for arg in BASE if arg != "--plain-http"]
    result = serve(*base, "--data-dir", str(tmp_path), "--secret-file", str(secret),
                   "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
                   "--tls-client-ca", str(tls.ca))
    assert result.exit_code == 0, result.output
    assert captured[0].api_url == "https://127.0.0.1:7401"
    assert captured[0].tls_client_ca == tls.ca


def test_admin_token_file_must_be_private_and_hold_a_token(tmp_path: Path, secret: Path,
                                                          captured: list[MemberSettings]) -> None:
    args = (*BASE, "--data-dir", str(tmp_path), "--secret-file", str(secret))
    loose = tmp_path / "loose.token"
    loose.write_text("hc_" + "a" * 43)
    loose.chmod(0o644)
    one_error_line(serve(*args, "--admin-token-file", str(loose)), "admin_token_file: ")
    garbled = tmp_path / "garbled.token"
    fd = os.open(garbled, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("password1")
    one_error_line(serve(*args, "--admin-token-file", str(garbled)), "does not hold a hacoord token")
    one_error_line(serve(*args, "--admin-token-file", str(tmp_path / "none")), "cannot read")
    assert captured == []
    good = tmp_path / "admin.token"
    assert CliRunner().invoke(main, ["token", "generate", str(good)]).exit_code == 0
    assert serve(*args, "--admin-token-file", str(good), "--metrics-open").exit_code == 0
    assert captured[0].admin_token_file == good and captured[0].metrics_open is True


def test_broken_toml_names_the_file(tmp_path: Path, captured: list[MemberSettings]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("member_id = \n")
    one_error_line(serve("--config", str(bad)), "config: ")
    one_error_line(serve("--config", str(tmp_path / "missing.toml")), "cannot read")
    peers = tmp_path / "peers.toml"
    peers.write_text("[[peers]]\nid = \"m2\"\n")
    one_error_line(serve("--config", str(peers)), "peers[0]: needs id, raft_address and api_url")


def test_insecure_on_loopback_is_allowed(tmp_path: Path, captured: list[MemberSettings]) -> None:
    result = serve(*BASE, "--data-dir", str(tmp_path), "--insecure")
    assert result.exit_code == 0, result.output
    assert captured[0].read_secret() is None


@pytest.mark.parametrize(("low", "high"), [("0.1", "0.2"), ("0.3", "2"), ("1", "30")])
def test_any_accepted_election_timeouts_make_a_working_raft_configuration(
        low: str, high: str, tmp_path: Path, captured: list[MemberSettings]) -> None:
    """What PySyncObj asserts about its timeouts (heartbeat period, connection timeout) follows
    from the accepted election timeouts, instead of failing with an AssertionError."""
    from pysyncobj import SyncObjConf

    from hacoord.server.member import build_replicator

    result = serve(*BASE, "--data-dir", str(tmp_path), "--insecure",
                   "--election-timeout-min", low, "--election-timeout-max", high)
    assert result.exit_code == 0, result.output
    SyncObjConf(**build_replicator(captured[0]).tuning.conf_kwargs()).validate()


def test_a_fatal_condition_stops_the_member_as_a_signal_does() -> None:
    """A member that cannot go on (replication fatal) stops serving, and first answers its long
    polls and waiting requests as on SIGTERM: left waiting, uvicorn's grace cut them off."""
    events: list[str] = []
    replicator = SimpleNamespace(fatal="the journal is gone",
                                 begin_stop=lambda: events.append("begin_stop"))
    server = SimpleNamespace(should_exit=False)
    asyncio.run(member_module._watch_fatal(replicator, server))  # type: ignore[arg-type]
    assert events == ["begin_stop"] and server.should_exit
