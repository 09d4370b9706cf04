"""The pure core: cluster state, commands, events and the deterministic ``apply``.

No clock, randomness, threads or I/O live here; see ``apply`` for the contract every replica
relies on.
"""

from hacoord.core import commands
from hacoord.core.apply import apply
from hacoord.core.codec import decode_state, digest, encode_state
from hacoord.core.events import Event
from hacoord.core.model import ClusterState, Node, Partition, Resource
from hacoord.core.results import Applied, Outcome, Rejected
from hacoord.core.validate import validate, validate_transition

__all__ = [
    "Applied", "ClusterState", "Event", "Node", "Outcome", "Partition", "Rejected", "Resource",
    "apply", "commands", "decode_state", "digest", "encode_state", "validate",
    "validate_transition",
]
