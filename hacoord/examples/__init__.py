"""Example data nodes built on :mod:`hacoord.agent`.

:mod:`hacoord.examples.kvnode` is a small in-memory key-value service: it serves only the partitions
its agent says it holds, refuses requests stamped with a stale partition epoch, replicates writes
from each partition's leader to its other replicas, and copies partitions for two-phase moves.
:mod:`hacoord.examples.kvclient` routes reads and writes to it by the coordinator's routing table.
"""
