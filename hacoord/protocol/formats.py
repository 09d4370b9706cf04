"""The formats of the API's values, shared by the state machine (which checks what reaches the
log) and the request schemas (which refuse it at the edge): identifiers, addresses, and the
bounds of a node's capacity."""

#: Identifiers of nodes, resources, tokens and members: a letter or digit, then letters,
#: digits, ``.``, ``_``, ``-``; at most 63 characters.
ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
#: A TCP port, 1-65535.
PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: ``host:port``; the host is a DNS name, an IPv4 address or a bracketed IPv6 address.
ADDRESS = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):" + PORT + "$"
#: A node's capacity (its share of replicas is proportional to it) is a relative weight; a
#: billion to one is range enough, and the planner's arithmetic (shares, loads per capacity)
#: stays far from underflow.
MIN_CAPACITY = 0.001
MAX_CAPACITY = 1e6
