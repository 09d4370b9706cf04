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
_H = "[0-9A-Fa-f]{1,4}"
#: An IPv6 address in its textual forms (RFC 4291 2.2, without embedded IPv4 or a zone).
IPV6 = "(" + "|".join([
    f"({_H}:){{7}}{_H}", f"({_H}:){{1,7}}:", f"({_H}:){{1,6}}:{_H}",
    *(f"({_H}:){{1,{k}}}(:{_H}){{1,{7 - k}}}" for k in range(5, 0, -1)),
    f":((:{_H}){{1,7}}|:)"]) + ")"
#: A member's API URL: http(s), a host, an optional port and path (no query or fragment).
API_URL = (r"^https?://(\[" + IPV6 + r"\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})(:" + PORT
           + r")?(/[A-Za-z0-9._~/-]*)?$")
#: A node's capacity (its share of replicas is proportional to it) is a relative weight; a
#: billion to one is range enough, and the planner's arithmetic (shares, loads per capacity)
#: stays far from underflow.
MIN_CAPACITY = 0.001
MAX_CAPACITY = 1e6
