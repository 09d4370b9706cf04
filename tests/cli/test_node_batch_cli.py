"""``hacoord node add-batch FILE``: every node registered, the refused ones named, exit 2 if any
was, and a file that is not a list of nodes refused in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hacoord.testing.inprocess import InProcessCluster
from tests.cli.test_tokens_cli import one_error_line, runner_for


@pytest.fixture
def cluster() -> Iterator[InProcessCluster]:
    with InProcessCluster(1) as running:
        yield running


def test_node_add_batch_registers_each_and_names_the_refused(cluster: InProcessCluster,
                                                             tmp_path: Path) -> None:
    run = runner_for(cluster)
    assert run("node", "add", "n1", "--address", "10.0.0.1:9000").exit_code == 0
    listing = tmp_path / "nodes.json"
    listing.write_text(json.dumps([{"id": f"n{k}", "address": f"10.0.1.{k}:9000"}
                                   for k in range(5)]))
    result = run("node", "add-batch", str(listing))
    assert result.exit_code == 2, result.output
    assert "registered 4 of 5 nodes" in result.stdout and "refused n1: already_exists" in result.stdout
    assert result.stderr.strip() == "error: 1 of 5 nodes were refused"
    assert len(json.loads(run("--json", "node", "list").stdout)["nodes"]) == 5
    listing.write_text("{not json")
    one_error_line(run("node", "add-batch", str(listing)), 2, "not JSON")
    listing.write_text("[]")
    one_error_line(run("node", "add-batch", str(listing)), 2, "non-empty JSON array")
