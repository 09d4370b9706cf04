"""``hacoord token``: create (the secret printed once), list, revoke, whoami and generate; and a
refused token as one line with exit status 2."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hacoord.cli.main import CliState, main
from hacoord.client import Client
from hacoord.protocol.tokens import TOKEN_PATTERN
from hacoord.testing.inprocess import InProcessCluster

Run = Callable[..., Result]


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(1) as running:
        yield running


def runner_for(cluster: InProcessCluster, token: str | None = None) -> Run:
    """The CLI over ``cluster``; ``token`` None sends the admin token, "" none at all."""
    def invoke(*args: str) -> Result:
        def factory(state: CliState) -> Client:
            transport = cluster.transport if token is None else cluster.transport_as(None)
            return Client(cluster.urls, timeout=state.timeout, deadline=state.deadline,
                          transport=transport, token=token or None)

        return CliRunner().invoke(main, list(args), obj=CliState(client_factory=factory))

    return invoke


def one_error_line(result: Result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert "Traceback" not in result.output


def test_create_prints_the_secret_once_and_it_works(cluster: InProcessCluster) -> None:
    run = runner_for(cluster)
    created = run("token", "create", "ci", "--role", "reader", "--expires", "12h")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert TOKEN_PATTERN.match(secret) and "shown this once" in created.stderr
    me = runner_for(cluster, secret)("token", "whoami")
    assert me.stdout.strip() == "ci (role reader)"
    listed = run("token", "list", "--json")
    tokens = json.loads(listed.stdout)
    assert [(t["name"], t["role"], t["expired"]) for t in tokens] == [("ci", "reader", False)]
    assert secret not in listed.stdout and secret not in run("token", "list").stdout
    one_error_line(runner_for(cluster, secret)("node", "add", "n1", "--address", "h:1"), 2,
                   "may not do this")


def test_revoke_then_the_token_is_refused_with_one_line(cluster: InProcessCluster) -> None:
    run = runner_for(cluster)
    secret = run("token", "create", "gone", "--role", "operator").stdout.strip()
    revoked = run("token", "revoke", "gone")
    assert revoked.exit_code == 0 and "token gone revoked" in revoked.stdout
    one_error_line(runner_for(cluster, secret)("node", "list"), 2, "unknown, revoked or expired")
    one_error_line(runner_for(cluster, "")("node", "list"), 2, "needs an API token")
    one_error_line(run("token", "revoke", "gone"), 2, "unknown token")


def test_node_tokens_need_a_node_and_bad_input_is_refused(cluster: InProcessCluster) -> None:
    run = runner_for(cluster)
    one_error_line(run("token", "create", "x", "--role", "node"), 2, "--node")
    one_error_line(run("token", "create", "x", "--role", "reader", "--node", "n1"), 2, "--node")
    one_error_line(run("token", "create", "x", "--role", "root"), 2, "--role")
    one_error_line(run("token", "create", "x", "--role", "reader", "--expires", "soon"), 2,
                   "--expires")
    made = run("token", "create", "n1-agent", "--role", "node", "--node", "n1", "--json")
    assert json.loads(made.stdout)["token"]["node"] == "n1"
    assert cluster.state("m1").revision == 1  # only the good one


def test_generate_writes_a_private_token_file_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    made = CliRunner().invoke(main, ["token", "generate", str(path)])
    assert made.exit_code == 0, made.output
    assert TOKEN_PATTERN.match(path.read_text().strip())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = CliRunner().invoke(main, ["token", "generate", str(path)])
    one_error_line(again, 2, "cannot create")


def test_an_unreadable_token_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--token-file", str(tmp_path / "missing"), "node", "list"])
    one_error_line(result, 2, "--token-file")
