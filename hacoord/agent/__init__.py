"""The node agent: what a data node embeds to be placed, kept alive and told what it holds.

    from hacoord.agent import AssignmentHandler, NodeAgent

    class Handler(AssignmentHandler):
        def on_assign(self, assignment): ...      # serve assignment.partition under assignment.epoch
        def on_release(self, resource, partition): ...
        def catch_up(self, assignment): ...       # copy the partition from assignment.route.leader

    agent = NodeAgent("n1", "10.0.1.1:9000", Handler(), endpoints="http://10.0.0.1:7401").start()

See :class:`NodeAgent` for what it runs and how it rides through a coordinator failover. The agent
needs only the client (no coordinator code).
"""

from hacoord.agent.agent import AgentStats, NodeAgent
from hacoord.agent.assignments import Assignment, AssignmentBook, Change, Role, role_of
from hacoord.agent.handler import AssignmentHandler

__all__ = [
    "AgentStats",
    "Assignment",
    "AssignmentBook",
    "AssignmentHandler",
    "Change",
    "NodeAgent",
    "Role",
    "role_of",
]
