"""What a forwarding member says about a request, sealed so that only a member can say it.

A follower forwards a write to the leader with two claims: that a member forwarded it
(``x-hacoord-forwarded``: the leader then does not forward it again, and the audit names the
member as ``via``) and for which client (``x-hacoord-client``: the address the leader counts the
write against in its per-client limits, and the audit's ``client``). Any client could send those
headers itself, to spread its writes over made-up addresses, to use up another client's quota,
or to write a false ``via`` into the audit. So the follower also sends ``x-hacoord-forward-seal``:
an HMAC-SHA256, under a key derived from the cluster secret every member holds, of the member,
the client, the method, the path and the request id (seen again only on that same request, whose
retries the request id makes one write; a follower gives a forward that has none an id of its
own). Where a header comes twice, the first counts, as for the handlers. The leader believes the
claims only when the seal matches; otherwise the request is the sender's own, counted and audited
as coming from the connection's address.

A member started without a cluster secret (the insecure, loopback-only mode) has no key: it
believes the claims as they come, as every member did before seals.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.types import Scope

from hacoord.protocol import (
    CLIENT_HEADER,
    FORWARD_SEAL_HEADER,
    FORWARDED_HEADER,
    REQUEST_ID_HEADER,
)

_FORWARDED = FORWARDED_HEADER.encode()
_CLIENT = CLIENT_HEADER.encode()
_SEAL = FORWARD_SEAL_HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()
#: Characters of a claim kept (within apply's bound on audit values; an address is shorter).
MAX_CLAIM = 128
#: Where the claims found for a request are kept in its ASGI scope, with the seal that found
#: them (worked out once per seal).
SCOPE_KEY = "hacoord.forwarded"


@dataclass(frozen=True)
class Forwarded:
    """A request's forwarding claims, believed: the member that forwarded it (``via``) and the
    client it forwarded it for."""

    via: str
    client: str


class ForwardSeal:
    """Seals and checks forwarding claims with a key derived from ``secret`` (None: no key,
    claims believed as they come; see the module docstring)."""

    def __init__(self, secret: str | None) -> None:
        self._key = None if secret is None else hmac.new(
            secret.encode(), b"hacoord api forwarding seal", hashlib.sha256).digest()

    def seal(self, via: str, client: str, method: str, path: str,
             request_id: str | None) -> str | None:
        """The seal header's value for these claims (None without a key)."""
        if self._key is None:
            return None
        # Header values as the leader's ASGI scope carries them (latin-1 bytes); the path as both
        # members' servers decoded it.
        return self._mac(via.encode("latin-1"), client.encode("latin-1"), method.encode(),
                         path.encode(), (request_id or "").encode("latin-1"))

    def forwarded(self, scope: Scope) -> Forwarded | None:
        """The request's claims if a member made them (the seal matches), else None. Kept in
        the scope: the limits and the audit ask for the same request."""
        kept = scope.get(SCOPE_KEY)
        if kept is not None and kept[0] is self:  # another seal (another key) works it out anew
            return kept[1]  # type: ignore[no-any-return]
        found: Forwarded | None = None
        via = client = seal = None
        request_id = None
        for name, value in scope["headers"]:  # the first of each, as the handlers read them
            if name == _FORWARDED:
                via = via if via is not None else value
            elif name == _CLIENT:
                client = client if client is not None else value
            elif name == _SEAL:
                seal = seal if seal is not None else value
            elif name == _REQUEST_ID:
                request_id = request_id if request_id is not None else value
        if via and client and self._believed(via, client, seal, scope, request_id or b""):
            found = Forwarded(via.decode("latin-1")[:MAX_CLAIM],
                              client.decode("latin-1")[:MAX_CLAIM])
        scope[SCOPE_KEY] = (self, found)
        return found

    def _believed(self, via: bytes, client: bytes, seal: bytes | None, scope: Scope,
                  request_id: bytes) -> bool:
        if self._key is None:
            return True
        if seal is None:
            return False
        expected = self._mac(via, client, scope["method"].encode(), scope["path"].encode(),
                             request_id)
        return hmac.compare_digest(expected.encode(), seal)

    def _mac(self, *parts: bytes) -> str:
        assert self._key is not None
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.hexdigest()
