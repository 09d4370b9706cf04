"""hacoord: a highly-available partition coordinator replicated with Raft.

The public surface for services is the client: ``from hacoord import Client``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
