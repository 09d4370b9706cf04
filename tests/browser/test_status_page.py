"""The status page (``/ui``) in a real browser against real member processes, over HTTPS with
tokens: it shows the leader and follows a leader kill (reading from another member when its own
is gone), colours a down node's partitions, explains a partition on click, and shows a drain's
moves as they go."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from hacoord.testing.cluster import LocalCluster, report_caught_up, running_cluster, wait_for

pytestmark = pytest.mark.integration

#: The colours style.css gives to the healths the tests look for.
HEALTHY = "rgb(46, 158, 79)"
ZONES = ("z0", "z1", "z2")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # Heartbeats go every 0.3 s: a node is suspect after 2 s without one, down after 4.
    with running_cluster(tmp_path / "c", 3, ("--suspect-after", "2", "--down-after", "4")) as running:
        yield running


class Keepalive:
    """Heartbeats for hand-added nodes from a thread, as their agents would; :meth:`stop_for`
    lets one fall silent."""

    def __init__(self, cluster: LocalCluster, node_ids: list[str]) -> None:
        self.client = cluster.client(timeout=2.0, deadline=10.0)
        self.epochs = {n: self.client.node_start_session(n).epoch for n in node_ids}
        self.silent: set[str] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.3):
            for node_id, epoch in list(self.epochs.items()):
                if node_id not in self.silent:
                    self.client.node_heartbeat(node_id, epoch)

    def stop_for(self, node_id: str) -> None:
        self.silent.add(node_id)

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def nodes(cluster: LocalCluster) -> Iterator[Keepalive]:
    """Five data nodes in three zones, kept alive, and a resource of 12 partitions x RF 2."""
    client = cluster.client(timeout=2.0, deadline=20.0)
    ids = [f"n{k}" for k in range(1, 6)]
    for k, node_id in enumerate(ids):
        client.node_add(node_id, f"127.0.0.1:{9100 + k}", zone=ZONES[k % 3])
    keepalive = Keepalive(cluster, ids)
    client.resource_create("orders", 12, 2)
    # Only what the tests do moves replicas (no re-creation of a down node's replicas).
    client.rebalance_configure(rereplicate_after=3600)
    yield keepalive
    keepalive.close()


def open_page(page: Any, cluster: LocalCluster, member_id: str) -> None:
    """Open ``member_id``'s page and sign in with the cluster's token."""
    page.goto(cluster.members[member_id].url + "/ui")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", cluster.token)
    page.click("#login-form button")
    expect(page.locator("#login")).to_be_hidden()


def test_the_page_asks_for_a_token_and_keeps_it_in_the_tab_only(page: Any, cluster: LocalCluster) -> None:
    leader = cluster.leader()
    page.goto(cluster.members[leader].url + "/ui")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "hc_" + "x" * 43)
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    assert page.evaluate("() => window.sessionStorage.length") == 0  # a refused token is dropped
    page.fill("#token", cluster.token)
    page.click("#login-form button")
    expect(page.locator("#leader")).to_have_attribute("data-leader", leader)
    assert page.evaluate("() => window.localStorage.length") == 0
    assert page.evaluate("() => window.sessionStorage.getItem('hacoord-token')") == cluster.token
    page.click("#forget")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("() => window.sessionStorage.length") == 0


def test_the_page_shows_the_leader_and_follows_it_through_a_kill(page: Any, cluster: LocalCluster) -> None:
    leader = cluster.leader()
    open_page(page, cluster, leader)  # the page's own member is the one that will die
    expect(page.locator("#leader")).to_have_attribute("data-leader", leader)
    expect(page.locator("#members tr")).to_have_count(3)
    expect(page.locator(f"#members tr[data-member='{leader}']")).to_have_attribute("data-role", "leader")
    for member_id in cluster.members:
        if member_id != leader:
            expect(page.locator(f"#members tr[data-member='{member_id}']")).to_have_attribute(
                "data-role", "follower")

    killed_at = time.monotonic()
    cluster.kill(leader)
    shown = page.locator(f"#leader:not([data-leader='{leader}']):not([data-leader=''])")
    expect(shown).to_have_count(1)
    seconds = time.monotonic() - killed_at
    successor = cluster.leader(among=[m for m in cluster.members if m != leader])
    expect(page.locator("#leader")).to_have_attribute("data-leader", successor)
    print(f"the page showed the new leader {seconds:.2f} s after the old one was killed")
    expect(page.locator(f"#members tr[data-member='{leader}']")).to_have_attribute("data-role", "unreachable")
    # It keeps reading (from another member): a write made now shows up on it.
    cluster.client(timeout=2.0, deadline=20.0).node_add("late", "127.0.0.1:9199")
    expect(page.locator("#nodes tr[data-node='late']")).to_have_count(1)
    expect(page.locator("#source")).not_to_have_text(leader)
    expect(page.locator("#changes")).to_contain_text("NodeRegistered")


def cells_of(cluster: LocalCluster, node_id: str) -> tuple[list[str], list[str]]:
    """The partitions of ``orders`` that have a replica on ``node_id``, and the others."""
    routes = cluster.client(timeout=2.0, deadline=20.0).routing("orders", consistent=True)
    mine = [f"orders/{r.partition}" for r in routes if node_id in r.replicas]
    return mine, [f"orders/{r.partition}" for r in routes if node_id not in r.replicas]


def test_a_down_node_turns_its_partitions_cells_unhealthy(page: Any, cluster: LocalCluster,
                                                          nodes: Keepalive) -> None:
    open_page(page, cluster, cluster.leader())
    expect(page.locator("#map .cell[data-health='healthy']")).to_have_count(12)
    expect(page.locator("#health")).to_have_attribute("data-status", "healthy")
    mine, others = cells_of(cluster, "n2")
    assert mine and others
    for key in mine + others:
        expect(page.locator(f"[data-partition='{key}']")).to_have_css("background-color", HEALTHY)

    nodes.stop_for("n2")
    expect(page.locator("#nodes tr[data-node='n2']")).to_have_attribute("data-status", "down")
    for key in mine:
        cell = page.locator(f"[data-partition='{key}']")
        expect(cell).not_to_have_attribute("data-health", "healthy")
        expect(cell).not_to_have_css("background-color", HEALTHY)
    for key in others:
        expect(page.locator(f"[data-partition='{key}']")).to_have_attribute("data-health", "healthy")
    expect(page.locator("#health")).not_to_have_attribute("data-status", "healthy")
    expect(page.locator("#node-counts")).to_contain_text("1 down")

    page.click(f"[data-partition='{mine[0]}']")
    explained = page.locator("#explain")
    expect(explained).to_be_visible()
    expect(explained).to_contain_text('"replication_factor": 2')
    expect(explained).to_contain_text(mine[0])


def test_the_rebalance_panel_moves_while_a_drain_runs(page: Any, cluster: LocalCluster,
                                                      nodes: Keepalive) -> None:
    client = cluster.client(timeout=2.0, deadline=20.0)
    client.rebalance_configure(max_moves_per_node=1, max_moves=1)
    held = len(cells_of(cluster, "n1")[0])
    assert held >= 2  # enough moves to watch the panel go
    open_page(page, cluster, cluster.leader())
    panel = page.locator("#rebalance")
    expect(panel).to_have_attribute("data-pending", "0")

    client.node_set_state("n1", admin="draining")
    expect(page.locator("#rebalance-summary")).to_contain_text("draining n1")
    expect(panel).to_have_attribute("data-pending", "1")
    expect(page.locator("#moves tr")).to_have_count(1)
    expect(page.locator("#moves")).to_contain_text("n1")
    expect(page.locator("#map .cell.moving")).to_have_count(1)

    # One move at a time (max_moves=1): each is reported caught up only once the page has shown
    # the one before completed, so the page must show the count climb step by step.
    completed = 0
    for _ in range(held + 5):  # bounded: n1 holds ``held`` replicas
        if not cells_of(cluster, "n1")[0]:
            break
        wait_for("a move in flight", lambda: client.rebalance_status()["pending"] or None,
                 timeout=30)
        completed += wait_for("the move reported caught up",
                              lambda: report_caught_up(client, "orders") or None, timeout=30)
        expect(panel).to_have_attribute("data-completed", str(completed))
    assert completed == held and not cells_of(cluster, "n1")[0]
    expect(panel).to_have_attribute("data-pending", "0")
    expect(panel).to_have_attribute("data-completed", str(held))
    expect(page.locator("#nodes tr[data-node='n1'] td").nth(5)).to_have_text("0")
