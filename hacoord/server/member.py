"""Run one coordinator member: the Raft replicator and the HTTP API on one asyncio event loop.

uvicorn runs with a single worker on purpose: a second worker would be a second Raft node.
SIGINT/SIGTERM stop the API, then the replicator (which syncs its journal) before the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Coroutine
from typing import Any

import uvicorn

from hacoord.replication.raft import FatalReplicationError, RaftReplicator, RaftTuning
from hacoord.server.app import create_app
from hacoord.server.logs import follow_term
from hacoord.server.settings import MemberSettings

log = logging.getLogger(__name__)


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
    tuning = RaftTuning(
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
            server.should_exit = True
            return
        await asyncio.sleep(0.2)


async def serve_member(settings: MemberSettings) -> int:
    """Run until signalled; returns the process exit status."""
    # Fewer, later collections of the young generation: the member allocates many short-lived
    # objects per request, and each collection pauses Raft ticks and requests alike.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    replicator = build_replicator(settings)
    follow_term(lambda: replicator.term)
    try:
        await replicator.start()
    except FatalReplicationError as exc:
        log.critical("%s", exc)
        return 1
    host, port = settings.api_address.rsplit(":", 1)
    app = create_app(replicator, settings.submit_timeout, manage_replicator=False,
                     unsafe_stale_reads=settings.unsafe_stale_reads,
                     suspect_after=settings.suspect_after, down_after=settings.down_after)
    if settings.unsafe_stale_reads:
        log.warning("UNSAFE: consistent reads are served from local state (chaos canary mode)")
    config = uvicorn.Config(app, host=host.strip("[]"), port=int(port), log_level="warning",
                            access_log=False, http="httptools", lifespan="on", workers=1,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    watcher = asyncio.create_task(_watch_fatal(replicator, server))
    log.info("member %s (pid %d): api %s, raft %s, data %s", settings.member_id, os.getpid(),
             settings.api_url, settings.raft_address, settings.data_dir)
    try:
        await server.serve()
    finally:
        watcher.cancel()
        await replicator.stop()
    if replicator.fatal:
        return 1
    return 0 if server.started else 1
