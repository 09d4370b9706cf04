"""What the first leader of a cluster writes once: the cluster's id and the first admin token.

:class:`Bootstrapper` runs on every member and acts while that member leads: until the state has
them, it proposes a new cluster id (:class:`~hacoord.core.commands.SetClusterId`, a random one
drawn here, outside ``apply``) and the admin token this member was started with
(:class:`~hacoord.core.commands.BootstrapAdmin`). Each command is refused once the state has what
it writes, so members that race for it (a leader change in between) cannot write it twice. The
id is proposed only once every other member runs a release that knows cluster ids (it said so on
the peer port): a member of an earlier release would reject the command it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from hacoord.core import commands as c
from hacoord.core.access import BOOTSTRAP_NAME
from hacoord.replication.base import Replicator
from hacoord.server.errors import ErrorReply

log = logging.getLogger(__name__)

RETRY = 0.1


def new_cluster_id() -> str:
    """A fresh cluster id: 32 random hex digits."""
    return secrets.token_hex(16)


class Bootstrapper:
    """On the leader, until the state has them: name the cluster and write the admin token whose
    digest is ``bootstrap_hash`` (None: this member was started without one)."""

    def __init__(self, replicator: Replicator, submit: Callable[[c.Command], Any],
                 bootstrap_hash: str | None) -> None:
        self.replicator = replicator
        self.submit = submit
        self.bootstrap_hash = bootstrap_hash
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bootstrap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _pending(self) -> list[c.Command]:
        state = self.replicator.state
        todo: list[c.Command] = []
        if not state.cluster_id and self.replicator.peers_name_clusters():
            todo.append(c.SetClusterId(cluster_id=new_cluster_id()))
        if self.bootstrap_hash is not None and not state.auth_bootstrapped:
            todo.append(c.BootstrapAdmin(hash=self.bootstrap_hash))
        return todo

    def _done(self) -> bool:
        state = self.replicator.state
        return bool(state.cluster_id) and (self.bootstrap_hash is None or state.auth_bootstrapped)

    async def _run(self) -> None:
        replicator = self.replicator
        while not self._done():
            if replicator.is_leader() and replicator.loaded:
                for command in self._pending():
                    await self._write(command)
            await asyncio.sleep(RETRY)

    async def _write(self, command: c.Command) -> None:
        try:
            await self.submit(command)
        except ErrorReply as exc:
            if exc.code != "already_exists":
                log.info("%s not written yet (%s); retrying", command.TYPE, exc.code)
            elif isinstance(command, c.BootstrapAdmin):  # bootstrapped, or its digest is taken
                log.warning("admin token not written: %s", exc.message)
                self.bootstrap_hash = None
            return
        if isinstance(command, c.SetClusterId):
            log.info("cluster named %s", command.cluster_id)
        else:
            log.info("cluster bootstrapped with the admin token %r", BOOTSTRAP_NAME)
