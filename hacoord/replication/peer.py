"""The Raft peer port, hardened: PySyncObj's TCP transport with bounds on what a stranger can
make a member do.

PySyncObj 0.3.17 reads a message's 4-byte length and then buffers that many bytes - growing the
buffer by copying - before it can tell whether the sender knows the cluster secret; a connection
that never authenticates is kept for ever; and a failed ``accept`` (out of file descriptors)
closes the listener for good, silently. A stranger on the network could therefore depose the
leader with one connection streaming zeros after a 2 GiB length prefix, or take the peer port
away by exhausting descriptors. Here:

* :class:`GuardedConnection` refuses a length over ``max_message`` (and over ``max_handshake``
  before the connection has authenticated, i.e. before a message decrypted and decoded), reads
  at most ``read_per_pass`` bytes per readiness event (level-triggered polling brings it back),
  and keeps its read buffer in a ``bytearray`` (no quadratic copying);
* :class:`GuardedTransport` drops a connection that has not authenticated within
  ``handshake_timeout`` seconds, and refuses new ones while ``max_unauthenticated`` are pending;
* :class:`GuardedServer` survives a failing ``accept``: it logs it (at most once a second), keeps
  a spare descriptor to accept-and-close the pending connection, pauses accepting for a short
  back-off and resumes; :attr:`GuardedTransport.listening` says whether the listener is up, and a
  member whose listener is down reports not ready.

Members of different clusters refuse each other: right after a connection is set up, before any
Raft message, each side sends ``{"type": "hacoord_cluster", "cluster_id": ...}`` with the id in
its applied state; a member that has an id drops the connection of a peer that names another
(``cluster_mismatch``). A member whose state has no id yet (a new member) accepts any, as does one
hearing from a peer that sends no such message (a release before cluster ids: the check must not
break a rolling upgrade from it); Raft messages of an unknown type are ignored by the library, so
those peers ignore ours. The secret already keeps strangers out; this keeps out a member that has
the secret but belongs elsewhere, such as a member of a cluster restored from a backup of this one.
A member that started with an empty data directory and hears a peer name a cluster it has not yet
caught up to is told so (``heard_of_existing_cluster``): it may have lost its data, and waits for
a leader before it votes.

Idle links are kept alive. PySyncObj drops a connection on which it has read nothing for its
``connectionTimeout``, and only notices at the next send or read on it, which it then loses. Two
followers exchange nothing while a leader is healthy, so the first message one sent the other
after a second of quiet (a vote request, a pre-vote) was lost: a successor asked to take over
(``timeout_now``) reached only the outgoing leader, and in a 5-member cluster lost its election.
:class:`GuardedTransport` sends ``{"type": "hacoord_keepalive"}`` on every connection it has
sent nothing on for ``KEEPALIVE_SHARE`` of the connection timeout, to peers that named the
``keepalive`` feature; the receiver's read is all it is for. Nothing (a keepalive, a vote
request) is sent on a connection whose key exchange is unfinished: the peer would drop it.

Every refusal is counted in :attr:`GuardedTransport.refused` (exported as metrics) and logged at
most once a second per reason.

Threads: the member's event loop (PySyncObj's tick) only.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
import struct
import zlib
from typing import Any

import pysyncobj.pickle as pysyncobj_pickle
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.monotonic import monotonic as monotonic_time
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

log = logging.getLogger(__name__)

LENGTH = struct.Struct("i")
MAX_MESSAGE = 64 << 20       # a message between members (a batch of entries, a snapshot chunk)
MAX_HANDSHAKE = 64 << 10     # a message before the sender proved it knows the secret
READ_PER_PASS = 256 << 10    # bytes read from one connection per readiness event
HANDSHAKE_TIMEOUT = 2.0      # seconds an incoming connection has to authenticate
MAX_UNAUTHENTICATED = 64     # incoming connections waiting to authenticate, at most
ACCEPT_BACKOFF = (0.05, 2.0)  # pause after a failing accept: first, longest
ACCEPTS_PER_PASS = 32        # connections accepted per readiness event of the listener
LISTEN_BACKLOG = 128
CLUSTER_MESSAGE = "hacoord_cluster"  # first message on a connection: the sender's cluster id
KEEPALIVE_MESSAGE = "hacoord_keepalive"  # sent on a connection otherwise quiet (see above)
#: A connection this member sent nothing on for this share of the connection timeout gets a
#: keepalive: the peer hears from it at least three times before it would drop the connection.
KEEPALIVE_SHARE = 0.25
#: What this release understands beyond the library's messages, named in CLUSTER_MESSAGE so that
#: a member of a newer release knows what an older peer ignores (``pre_vote``:
#: hacoord.replication.prevote; ``read_index``: hacoord.replication.readindex; ``membership``:
#: hacoord.replication.membership, configuration entries in the log; ``keepalive``: it sends
#: keepalives on quiet links, see above).
FEATURES = ("pre_vote", "read_index", "membership", "keepalive")
MAX_FEATURES = 32
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Throttled:
    """Log a line per reason at most once a second (a flood must not flood the log)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def warn(self, reason: str, message: str, *args: Any) -> None:
        now = monotonic_time()
        if now - self._last.get(reason, -10.0) >= 1.0:
            self._last[reason] = now
            log.warning(message, *args)


class GuardedConnection(TcpConnection):
    """A TcpConnection with bounded buffering (see the module docstring). ``on_refused(reason)``
    is told each time it drops a peer."""

    def __init__(self, *args: Any, max_message: int = MAX_MESSAGE,
                 max_handshake: int = MAX_HANDSHAKE, read_per_pass: int = READ_PER_PASS,
                 on_refused: Any = None, **kwargs: Any) -> None:
        self.max_message = max_message
        self.max_handshake = max_handshake
        self.read_per_pass = read_per_pass
        self.authenticated = False
        self.accepted_at = monotonic_time()
        self.on_refused = on_refused
        super().__init__(*args, **kwargs)

    def _refuse(self, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(reason)
        self.disconnect()

    def disconnect(self) -> None:
        """The library's disconnect. The library keeps one connection object per peer and
        reconnects it: the next connection must authenticate again, with the handshake's bound
        on message size until it has."""
        self.authenticated = False
        super().disconnect()

    # The library's private read path, replaced (it is bound by name from __processConnection).
    def _TcpConnection__tryReadBuffer(self) -> None:  # noqa: N802
        budget = self.read_per_pass
        while budget > 0:
            got = self._TcpConnection__processRead()
            if got <= 0:
                break
            budget -= got
        self._TcpConnection__lastReadTime = monotonic_time()

    def _TcpConnection__processRead(self) -> int:  # noqa: N802
        sock = self._TcpConnection__socket
        if sock is None:
            return 0
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return 0
        if not incoming:
            self.disconnect()
            return 0
        buffer = self._TcpConnection__readBuffer
        if not isinstance(buffer, bytearray):
            buffer = self._TcpConnection__readBuffer = bytearray(buffer)
        buffer += incoming
        if len(buffer) >= LENGTH.size:
            length = LENGTH.unpack_from(buffer)[0]
            bound = self.max_message if self.authenticated else self.max_handshake
            if length < 0 or length > bound:
                self._refuse("oversized" if self.authenticated else "oversized_handshake")
                return 0
        return len(incoming)

    def _TcpConnection__processParseMessage(self) -> Any:  # noqa: N802
        buffer = self._TcpConnection__readBuffer
        if len(buffer) < LENGTH.size:
            return None
        length = LENGTH.unpack_from(buffer)[0]
        bound = self.max_message if self.authenticated else self.max_handshake
        if length < 0 or length > bound:
            self._refuse("oversized" if self.authenticated else "oversized_handshake")
            return None
        if len(buffer) - LENGTH.size < length:
            return None
        data = bytes(buffer[LENGTH.size:LENGTH.size + length])
        try:
            if self.encryptor:
                timestamp = self.encryptor.extract_timestamp(data)
                if timestamp < self.recvLastTimestamp:
                    raise ValueError("message older than the previous one")
                self.recvLastTimestamp = timestamp
                data = self.encryptor.decrypt(data)
            message = pysyncobj_pickle.loads(zlib.decompress(data))
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ValueError("wrong connection key")
        except Exception:
            self._refuse("unauthenticated" if not self.authenticated else "undecodable")
            return None
        self.authenticated = True
        del buffer[:LENGTH.size + length]
        return message


class GuardedServer(TcpServer):
    """A TcpServer whose listener survives failing accepts (see the module docstring)."""

    def __init__(self, *args: Any, make_connection: Any, on_refused: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make_connection = make_connection
        self._on_refused = on_refused
        self._paused_until = 0.0
        self._backoff = ACCEPT_BACKOFF[0]
        self._spare: int | None = None
        self._reserve()

    def _reserve(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._spare = None

    def bind(self) -> None:
        super().bind()
        # The library listens with a backlog of 5: a burst of strangers would then keep the
        # other members from connecting at all.
        self._TcpServer__socket.listen(LISTEN_BACKLOG)

    @property
    def bound(self) -> bool:
        return self._TcpServer__socket is not None and self._TcpServer__fileno is not None

    @property
    def paused(self) -> bool:
        return self._paused_until > 0.0

    def _TcpServer__onNewConnection(self, descr: int, event: int) -> None:  # noqa: N802
        if event & POLL_EVENT_TYPE.ERROR:
            log.error("Raft listener reported an error; it will be opened again")
            self.unbind()
            return
        if not event & POLL_EVENT_TYPE.READ:
            return
        for _ in range(ACCEPTS_PER_PASS):
            if not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one pending connection; False when there is none (or accepting failed)."""
        listener = self._TcpServer__socket
        if listener is None or self._paused_until:
            return False
        try:
            sock, _addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                return True
            self._accept_failed(exc)
            return False
        self._backoff = ACCEPT_BACKOFF[0]
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._TcpServer__sendBufferSize)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._TcpServer__recvBufferSize)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return True
        conn = self._make_connection(sock, self._TcpServer__connectionTimeout)
        self._TcpServer__onNewConnectionCallback(conn)
        return True

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors (or memory): shed the pending connection with the spare
        descriptor, pause accepting for a back-off, never close the listener."""
        self._on_refused("accept_failed")
        _THROTTLE.warn("accept", "Raft listener cannot accept (%s); pausing %.2fs. Raise the "
                       "open-files limit if this repeats", exc.strerror, self._backoff)
        if exc.errno in RESOURCE_ERRORS and self._spare is not None:
            os.close(self._spare)
            self._spare = None
            try:
                sock, _ = self._TcpServer__socket.accept()
                sock.close()
            except OSError:
                pass
            self._reserve()
        fileno = self._TcpServer__fileno
        if fileno is not None:
            self._TcpServer__poller.unsubscribe(fileno)
        self._paused_until = monotonic_time() + self._backoff
        self._backoff = min(ACCEPT_BACKOFF[1], self._backoff * 2)

    def resume_if_due(self) -> None:
        """Accept again once the back-off has passed (called every tick)."""
        if self._paused_until and monotonic_time() >= self._paused_until:
            self._paused_until = 0.0
            fileno = self._TcpServer__fileno
            if fileno is not None:
                self._TcpServer__poller.subscribe(fileno, self._TcpServer__onNewConnection,
                                                  POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)

    def unbind(self) -> None:
        super().unbind()
        self._TcpServer__socket = None
        self._paused_until = 0.0

    def close_spare(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


_THROTTLE = _Throttled()


def _key_pending(conn: TcpConnection) -> bool:
    """True for a connection this member opened whose peer has not sent its key yet (the
    library calls it connected once this member's key is out)."""
    return conn.encryptor is not None and not conn.sendRandKey


class GuardedTransport(TCPTransport):
    """PySyncObj's TCP transport over :class:`GuardedServer` and :class:`GuardedConnection`."""

    handshake_timeout = HANDSHAKE_TIMEOUT
    max_unauthenticated = MAX_UNAUTHENTICATED

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
        self.refused: dict[str, int] = {}
        #: Connected peers that named their cluster (they run a release that knows cluster
        #: ids), with the id they named ("" before theirs was named).
        self.cluster_aware: dict[Any, str] = {}
        #: What each connected peer said it understands (FEATURES of its release; empty for a
        #: release that named none).
        self.features: dict[Any, frozenset[str]] = {}
        self._own_id_seen = ""
        #: When this member last sent to each peer (monotonic clock).
        self._last_sent: dict[Any, float] = {}
        self._next_keepalive = 0.0
        super().__init__(syncObj, selfNode, otherNodes)

    # --- what we count ---------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if reason not in ("accept_failed", "cluster_mismatch"):  # the latter says more itself
            _THROTTLE.warn(reason, "Raft peer port: dropped a connection (%s)", reason)

    @property
    def listening(self) -> bool:
        """True while the Raft listener is open (paused after a failing accept counts as open:
        it resumes by itself)."""
        server = self._server
        return not self._ready or (isinstance(server, GuardedServer) and server.bound)

    # --- connections -----------------------------------------------------------------------

    def _connection(self, sock: socket.socket | None = None,
                    timeout: float | None = None) -> GuardedConnection:
        conf = self._syncObj.conf
        return GuardedConnection(
            poller=self._syncObj._poller, socket=sock,
            timeout=conf.connectionTimeout if timeout is None else timeout,
            sendBufferSize=conf.sendBufferSize, recvBufferSize=conf.recvBufferSize,
            keepalive=conf.tcp_keepalive, on_refused=self._count)

    def _createServer(self) -> None:  # noqa: N802 (library's name)
        conf = self._syncObj.conf
        host, port = conf.bindAddress.rsplit(":", 1)
        host = host.strip("[]")
        if host not in ("0.0.0.0", "::"):
            host = globalDnsResolver().resolve(host)
        self._server = GuardedServer(
            self._syncObj._poller, host, port,
            onNewConnection=self._onNewIncomingConnection,
            sendBufferSize=conf.sendBufferSize, recvBufferSize=conf.recvBufferSize,
            connectionTimeout=conf.connectionTimeout,
            make_connection=lambda sock, timeout: self._connection(sock, timeout),
            on_refused=self._count)

    def addNode(self, node: Any) -> None:  # noqa: N802 (library's name)
        """As the library's, with a :class:`GuardedConnection` for outgoing connections."""
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = self._connection()
            conn.encryptor = self._syncObj.encryptor
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    # --- cluster identity ------------------------------------------------------------------

    def _cluster_id(self) -> str:
        machine = getattr(self._syncObj, "state_machine", None)
        return machine.state.cluster_id if machine is not None else ""

    def _onNodeConnected(self, node: Any) -> None:  # noqa: N802 (library's name)
        """Name our cluster first, so the peer checks it before any Raft message of ours."""
        conn = self._connections.get(node)
        if conn is not None:
            conn.send(self._cluster_message())
        super()._onNodeConnected(node)

    def _cluster_message(self) -> dict[str, Any]:
        return {"type": CLUSTER_MESSAGE, "cluster_id": self._cluster_id(),
                "features": list(FEATURES)}

    def supports(self, node: Any, feature: str) -> bool:
        """True if the connected peer ``node`` said it understands ``feature``."""
        return feature in self.features.get(node, ())

    def send(self, node: Any, message: Any) -> bool:
        """As the library's, but never on a connection this member opened whose key exchange
        is unfinished: the library calls it connected once it sent its own key, and a message
        sent before the peer's key came back lacks the key the peer expects, so the peer drops
        the connection (``undecodable``). Such a message is lost as one to a peer not connected
        is. Notes when this member last sent to ``node``."""
        conn = self._connections.get(node)
        if conn is not None and _key_pending(conn):
            # As the library's send would: a key reply overdue by the connection timeout (the
            # peer died or was cut off mid-exchange) drops the connection, to be made again.
            conn._TcpConnection__processConnectionTimeout()
            return False
        self._last_sent[node] = monotonic_time()
        return bool(super().send(node, message))

    def _keep_alive(self) -> None:
        """Send a keepalive on each connection this member has been quiet on for a while, to
        peers that said they know keepalives (one on an older release sends none back, and the
        link would drop at this member's own next send: leave such a link as it was)."""
        now = monotonic_time()
        if now < self._next_keepalive:
            return
        quiet = self._syncObj.conf.connectionTimeout * KEEPALIVE_SHARE
        self._next_keepalive = now + quiet / 4
        for node, conn in list(self._connections.items()):
            if conn.state != CONNECTION_STATE.CONNECTED:
                continue
            if _key_pending(conn):  # nothing else may come to check it (see send)
                conn._TcpConnection__processConnectionTimeout()
            elif (self.supports(node, "keepalive")
                    and now - self._last_sent.get(node, float("-inf")) >= quiet):
                self.send(node, {"type": KEEPALIVE_MESSAGE})

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 (library's name)
        if isinstance(message, dict) and message.get("type") == KEEPALIVE_MESSAGE:
            return  # reading it was the point
        if isinstance(message, dict) and message.get("type") == CLUSTER_MESSAGE:
            first = node not in self.cluster_aware
            theirs = message.get("cluster_id")
            self.cluster_aware[node] = theirs if isinstance(theirs, str) else ""
            named = message.get("features")
            self.features[node] = frozenset(
                f for f in (named if isinstance(named, list) else [])[:MAX_FEATURES]
                if isinstance(f, str) and len(f) <= 64)
            ours = self._cluster_id()
            self._refuse_if_foreign(node, ours)
            heard = getattr(self._syncObj, "heard_of_existing_cluster", None)
            if heard is not None and theirs and isinstance(theirs, str) and not ours:
                heard(node, theirs, first)
            return
        super()._onMessageReceived(node, message)

    def _refuse_if_foreign(self, node: Any, ours: str) -> None:
        theirs = self.cluster_aware.get(node, "")
        if ours and theirs and theirs != ours:
            self.cluster_aware.pop(node, None)
            self._count("cluster_mismatch")
            _THROTTLE.warn("cluster_mismatch:" + str(node), "Raft peer %s belongs to cluster "
                           "%r, this member to %r: refused", node, theirs[:64], ours)
            conn = self._connections.get(node)
            if conn is not None:
                conn.disconnect()

    def _check_named_peers(self) -> None:
        """Once this member learns its cluster's id (it was new, or catching up), peers it
        accepted before are checked against it too."""
        ours = self._cluster_id()
        if ours != self._own_id_seen:
            self._own_id_seen = ours
            for node in list(self.cluster_aware):
                self._refuse_if_foreign(node, ours)
            # Peers connected while this member had no id heard "": name it to them now (a
            # member that started empty learns from it that the cluster exists).
            told = [conn for node, conn in self._connections.items()
                    if node in self.cluster_aware and conn.state == CONNECTION_STATE.CONNECTED]
            for conn in told if ours else []:
                conn.send(self._cluster_message())

    def _onNodeDisconnected(self, node: Any) -> None:  # noqa: N802 (library's name)
        self.cluster_aware.pop(node, None)
        self.features.pop(node, None)
        self._last_sent.pop(node, None)
        super()._onNodeDisconnected(node)

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:  # noqa: N802
        """The library refuses a peer whose address (its first message after the key
        exchange, which proves it knows the secret) is not among the members it was given:
        the engine may take it in (a member added while this one was away)."""
        if (isinstance(message, str) and message not in self._nodeAddrToNode
                and message != "readonly" and 0 < len(message) <= 300
                and (self._syncObj.encryptor is None or conn.sendRandKey)):
            accept = getattr(self._syncObj, "accept_peer", None)
            if accept is not None:
                accept(message)
        super()._onIncomingMessageReceived(conn, message)

    def _onNewIncomingConnection(self, conn: Any) -> None:  # noqa: N802
        if len(self._unknownConnections) >= self.max_unauthenticated:
            self._count("too_many_unauthenticated")
            conn.disconnect()
            return
        super()._onNewIncomingConnection(conn)

    def _onTick(self) -> None:  # noqa: N802
        super()._onTick()
        self._check_named_peers()
        self._keep_alive()
        server = self._server
        if isinstance(server, GuardedServer):
            server.resume_if_due()
            if self._ready and not server.bound:
                self._rebind(server)
        deadline = monotonic_time() - self.handshake_timeout
        for conn in list(self._unknownConnections):
            if getattr(conn, "accepted_at", deadline) < deadline:
                self._unknownConnections.discard(conn)
                self._count("handshake_timeout")
                conn.disconnect()

    def _rebind(self, server: GuardedServer) -> None:
        """The listener was closed (an error on it): open it again."""
        try:
            server.bind()
        except OSError as exc:
            _THROTTLE.warn("bind", "cannot open the Raft listener again: %s", exc.strerror)
        else:
            log.warning("Raft listener open again")

    def destroy(self) -> None:
        super().destroy()
        if isinstance(self._server, GuardedServer):
            self._server.close_spare()


__all__ = ["CONNECTION_STATE", "GuardedConnection", "GuardedServer", "GuardedTransport"]
