"""Run one coordinator member: the Raft replicator and the HTTP API on one asyncio event loop.

uvicorn runs with a single worker on purpose: a second worker would be a second Raft node.

SIGTERM and SIGINT stop the member the same way, cleanly: at the signal the member stops standing
for election and answers every open long poll; the API then stops (within uvicorn's graceful
timeout), and the replicator stops last (its journal synced, its vote and commit index saved),
before the process exits 0. uvicorn re-raises the signal after its own shutdown, which killed
the process before the replicator stopped: :class:`MemberServer` does not. Nor does it close an
idle keep-alive connection the TLS way, which waits for the client's own close (an idle client
never sends it): every stop with a client connected ran out uvicorn's grace and logged an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Coroutine, Generator
from types import FrameType
from typing import Any

import uvicorn

from hacoord.replication import release
from hacoord.replication.gcpolicy import configure_for_member
from hacoord.replication.raft import FatalReplicationError, RaftReplicator, RaftTuning
from hacoord.replication.steps import STEPS, GcTimer, process_age
from hacoord.server.app import create_app
from hacoord.server.limits import HttpLimits
from hacoord.server.logs import follow_term
from hacoord.server.settings import MemberSettings

log = logging.getLogger(__name__)

#: Seconds a thread that wants the GIL waits before the holder must hand it over (Python's
#: default is 5 ms). Worker threads decode received snapshots and free replaced states while
#: the event loop ticks Raft; the loop gives up the GIL at every socket call and fsync, and at
#: the default it then waited up to 5 ms each time to get it back: ticks of 12-29 ms while a
#: snapshot decoded beside them.
GIL_SWITCH_INTERVAL = 0.001
#: Allocations of this many bytes or more get their own mapping from glibc's malloc (so freeing
#: one gives its memory back to the system); see :func:`keep_big_buffers_mapped`.
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
#: Seconds a stopping member gives idle connections, once closed, before it drops them (well
#: within uvicorn's grace of ``timeout_graceful_shutdown`` = 1 s after its own 0.1 s).
IDLE_CLOSE_WAIT = 0.3


class MemberServer(uvicorn.Server):
    """uvicorn's server with the member's signal handling (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit)
                     for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        """uvicorn's shutdown, with idle connections dropped soon after it closed them: closing
        one over TLS sends ``close_notify`` and waits for the client's, which an idle
        keep-alive client does not send until it next uses the connection, so uvicorn waited
        out its whole grace for them. They get :data:`IDLE_CLOSE_WAIT` to write out what they
        hold (the end of an answer to a slow reader); a request in progress is left to finish,
        as uvicorn does."""
        asyncio.get_running_loop().call_later(IDLE_CLOSE_WAIT, self._drop_idle)
        await super().shutdown(sockets)

    def _drop_idle(self) -> None:
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for connections
        self.should_exit = True
        self._on_signal()


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; return (soft, hard) as set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def keep_big_buffers_mapped() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD`; True if it was set.

    By default glibc raises the threshold to the size of the largest mapped block freed so far
    (up to 32 MiB). A member builds multi-megabyte buffers now and then (a 10 MB routing table
    read back from the child that encoded it, snapshot bytes): after the first is freed, the
    next ones come from the heap, and freeing them there leaves the pages with the process. The
    leader of a 100,000-partition cluster held about 20 MiB more than its followers that way
    after two routing reads. Setting the threshold turns the adjustment off. Elsewhere than
    glibc this does nothing."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def member_ssl(settings: MemberSettings) -> ssl.SSLContext:
    """How a member calls the other members over HTTPS: it verifies them against ``tls_ca``
    (or ``tls_client_ca``, or the system's CAs) and, under mutual TLS, shows its own
    certificate."""
    ca = settings.tls_ca or settings.tls_client_ca
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if settings.tls_cert is not None and settings.tls_key is not None:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return context


def run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop where available (less CPU per request, so the Raft ticks sharing
    the loop wait less), else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def build_replicator(settings: MemberSettings) -> RaftReplicator:
    """The replicator a member runs, from validated settings."""
    # PySyncObj needs heartbeats well inside the election timeout (a third of it at most) and
    # a connection timeout no shorter than the longest election timeout.
    heartbeat = min(0.05, settings.election_timeout_min / 4)
    tuning = RaftTuning(
        append_entries_period=heartbeat,
        connection_timeout=max(1.0, settings.election_timeout_max),
        leader_fallback_timeout=max(1.2, 2 * settings.election_timeout_max),
        election_timeout_min=settings.election_timeout_min,
        election_timeout_max=settings.election_timeout_max,
        log_compaction_min_entries=settings.log_compaction_min_entries,
        fsync=settings.fsync,
    )
    return RaftReplicator(settings.member_id, settings.members(), settings.data_dir,
                          settings.read_secret(), tuning)


async def _watch_fatal(replicator: RaftReplicator, server: uvicorn.Server) -> None:
    """Stop serving if replication hits a condition it cannot continue from."""
    while not server.should_exit:
        if replicator.fatal:
            log.critical("stopping: %s", replicator.fatal)
            replicator.begin_stop()  # long polls and waiting requests answered, as at a signal
            server.should_exit = True
            return
        await asyncio.sleep(0.2)


async def serve_member(settings: MemberSettings) -> int:
    """Run until signalled; returns the process exit status."""
    # Few collections, none of them over the state (see hacoord.replication.gcpolicy): each one
    # pauses Raft ticks and requests alike.
    configure_for_member()
    release.configure_for_member()  # big old structures are freed off the loop
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    keep_big_buffers_mapped()
    GcTimer(STEPS).install()  # a stall that a collection caused names it
    raise_descriptor_limit()
    replicator = build_replicator(settings)
    follow_term(lambda: replicator.term)
    try:
        await replicator.start()
    except FatalReplicationError as exc:
        if not exc.logged:
            log.critical("%s", exc)
        return 1
    host, port = settings.api_address.rsplit(":", 1)
    limits = HttpLimits(max_body=settings.max_body_bytes, max_watches=settings.max_watches,
                        max_watches_per_client=settings.max_watches_per_client,
                        writes_per_client=settings.writes_per_client,
                        write_burst=max(1, int(2 * settings.writes_per_client)))
    app = create_app(replicator, settings.submit_timeout, manage_replicator=False,
                     admin_token_hash=settings.read_admin_token_hash(),
                     metrics_open=settings.metrics_open, forward_tls=member_ssl(settings),
                     unsafe_no_auth=settings.unsafe_no_auth,
                     unsafe_stale_reads=settings.unsafe_stale_reads,
                     suspect_after=settings.suspect_after, down_after=settings.down_after,
                     limits=limits, forward_secret=settings.read_secret())
    if settings.insecure:
        log.warning("INSECURE: running without a cluster secret. PySyncObj's peer protocol is "
                    "pickle: any local user who can reach %s can run code in this member. Use a "
                    "secret (--secret-file) for anything but a throwaway test", settings.raft_address)
    if settings.unsafe_no_auth:
        log.warning("UNSAFE: the API asks for no token: anyone who reaches %s may do anything "
                    "(benchmark baseline only)", settings.api_address)
    if settings.unsafe_stale_reads:
        log.warning("UNSAFE: consistent reads are served from local state (chaos canary mode)")
    tls: dict[str, Any] = {}
    if settings.tls_cert is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        if settings.tls_client_ca is not None:
            tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    elif settings.plain_http:
        log.warning("plain HTTP on %s: tokens cross the wire in clear; loopback only",
                    settings.api_address)
    # No proxy headers: a client's address (its write rate, the audit's source) is the peer's,
    # never what a client on the same host claims in X-Forwarded-For (uvicorn trusts that from
    # 127.0.0.1 by default). Members that forward say whom for in their own, sealed header.
    config = uvicorn.Config(app, host=host.strip("[]"), port=int(port), log_level="warning",
                            access_log=False, http="httptools", lifespan="on", workers=1,
                            timeout_graceful_shutdown=1, proxy_headers=False, **tls)
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        log.info("stopping: answering open long polls, then the API, then Raft")
        loop.call_soon_threadsafe(replicator.begin_stop)

    server = MemberServer(config, on_signal)
    watcher = asyncio.create_task(_watch_fatal(replicator, server))
    age = process_age()
    log.info("member %s (pid %d): api %s, raft %s, data %s%s", settings.member_id, os.getpid(),
             settings.api_url, settings.raft_address, settings.data_dir,
             "" if age is None else f"; {age:.2f} s after the process started, imports and "
             "state load included")
    try:
        await server.serve()
    finally:
        watcher.cancel()
        await replicator.stop()
        log.info("stopped")
    if replicator.fatal:
        return 1
    return 0 if server.started else 1
