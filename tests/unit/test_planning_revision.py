"""``ClusterState.planning_revision`` moves with every change the placement planner reads, and
not with data nodes' metric reports or tokens; the leader's rebalancer plans again only when it
moves, or on a metric report while a resource balances on a metric."""

from __future__ import annotations

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c


def cluster() -> ClusterState:
    state = ClusterState()
    for node in "abc":
        assert apply(state, c.RegisterNode(node_id=node, address=f"{node}:1")).ok
    assert apply(state, c.CreateResource(name="r", partitions=3, replication_factor=2,
                                         assignment=[["a", "b"], ["b", "c"], ["c", "a"]])).ok
    return state


def test_metric_reports_and_tokens_leave_it_other_changes_move_it() -> None:
    state = cluster()
    planned = state.planning_revision
    assert planned == state.revision
    assert apply(state, c.SetNodeState(node_id="a", metrics={"disk": 5.0}, epoch=1)).ok
    assert apply(state, c.CreateToken(name="t", role="reader", hash="ab" * 32)).ok
    assert state.revision == planned + 2 and state.planning_revision == planned
    for change in (c.SetNodeState(node_id="a", metrics={"disk": 6.0}, zone="z1"),
                   c.SetNodeState(node_id="b", admin="cordoned"),
                   c.SetNodeState(node_id="c", capacity=2.0),
                   c.UpdateResource(name="r", replication_factor=3)):
        assert apply(state, change).ok, change
        assert state.planning_revision == state.revision, change


def test_metric_reports_change_the_plan_once_a_resource_balances_on_a_metric() -> None:
    from hacoord.placement.schedule import inputs
    from hacoord.server.rebalancer import plan_key

    state = cluster()
    before = plan_key(state, inputs(state, 0.0))
    assert apply(state, c.SetNodeState(node_id="a", metrics={"disk": 5.0})).ok
    assert plan_key(state, inputs(state, 0.0)) == before
    assert apply(state, c.UpdateResource(name="r", balance_metric="disk")).ok
    balanced = plan_key(state, inputs(state, 0.0))
    assert apply(state, c.SetNodeState(node_id="a", metrics={"disk": 6.0})).ok
    assert plan_key(state, inputs(state, 0.0)) != balanced


def test_a_decoded_state_starts_at_its_revision() -> None:
    state = cluster()
    assert ClusterState.from_dict(state.to_dict()).planning_revision == state.revision


def test_the_health_summary_is_not_built_again_for_a_metric_report() -> None:
    import asyncio

    from hacoord.server.health import HealthCache
    from hacoord.server.reads import HeavyReads

    state = cluster()
    replicator = type("Replicator", (), {"state": state})()
    heavy = HeavyReads()
    health = HealthCache(replicator, heavy)  # type: ignore[arg-type]

    async def scenario() -> None:
        await health.current()
        assert apply(state, c.SetNodeState(node_id="a", metrics={"disk": 1.0})).ok
        await health.current()
        assert heavy.counts["built"] == 1
        assert apply(state, c.SetNodeState(node_id="a", status="down")).ok
        summary = await health.current()
        assert heavy.counts["built"] == 2
        assert summary["nodes"]["down"] == 1, summary

    asyncio.run(scenario())
