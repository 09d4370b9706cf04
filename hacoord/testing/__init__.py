"""A testing kit for code that uses hacoord (as ``kazoo.testing`` is for ZooKeeper users).

Two clusters to test against:

* :class:`~hacoord.testing.cluster.LocalCluster` - real ``hacoord serve`` member processes on
  127.0.0.1 (free ports, a generated secret, data under a directory you give), to start, kill
  (any signal), restart and inspect; :func:`~hacoord.testing.cluster.running_cluster` starts one
  for a ``with`` block and stops it after, failing if a member logged a traceback. Use it for
  anything that depends on Raft: failover, restarts, durability.
* :class:`~hacoord.testing.inprocess.InProcessCluster` - the real API apps over in-memory
  replicators, in one process, no sockets: fast, for code that only talks to the API (a
  ``hacoord.Client`` or plain ``httpx`` over :attr:`InProcessCluster.transport`). You choose
  who leads and which members are down.

For code built on the data-node agent, :class:`~hacoord.testing.fake.FakeCoordinator` stands in
for the whole cluster behind a client (routes, moves, sessions, the change feed, driven by the
test) and :class:`~hacoord.testing.fake.RecordingHandler` records what the agent tells its
handler.

:func:`~hacoord.testing.cluster.wait_for` polls with a deadline (never sleep-and-hope), and
:func:`~hacoord.testing.placement.apply_plan` carries a rebalance plan out on a copy of a state
(an oracle for tests and benches of the planner).

Example::

    from hacoord import Client
    from hacoord.testing import LocalCluster

    cluster = LocalCluster(tmp_path, 3)
    cluster.start()
    try:
        client = Client(cluster.endpoints)
        client.node_add("n1", address="10.0.0.1:9000")
        cluster.kill(cluster.leader())          # SIGKILL the leader
        client.node_add("n2", address="10.0.0.2:9000")  # a new leader answers
    finally:
        cluster.stop_all()
"""

from hacoord.testing.cluster import LocalCluster, free_ports, running_cluster, wait_for
from hacoord.testing.fake import FakeCoordinator, RecordingHandler
from hacoord.testing.inprocess import InProcessCluster
from hacoord.testing.placement import apply_plan

__all__ = ["FakeCoordinator", "InProcessCluster", "LocalCluster", "RecordingHandler", "apply_plan",
           "free_ports", "running_cluster", "wait_for"]
