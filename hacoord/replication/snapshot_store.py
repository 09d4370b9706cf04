"""Where a member's snapshots live: its own dump, written off the event loop, and snapshots
received from a leader, staged beside it until they are installed.

:class:`SnapshotStore` takes the place of PySyncObj's ``Serializer`` (same methods, swapped in
when the engine is built) and fixes what that class gets wrong for hacoord:

* **A received snapshot never replaces the member's own dump unless it is installed.** The
  library renamed an incoming snapshot over the member's dump before anyone decided whether to
  install it; a stale one then left the member restarting from an older dump than its journal
  was compacted to. Here incoming chunks go to ``<dump>.incoming``, a complete snapshot to
  ``<dump>.received``, and only :meth:`install_received` renames it over the dump.
* **The member's own dump is written off the loop that ticks Raft.** :meth:`serialize` hands the
  work to a :class:`ForkWriter`: a child process encodes the state as it was at the fork
  (copy-on-write), writes a temporary file, syncs it, renames it over the dump and syncs the
  directory. The library compacts the journal only once :meth:`checkSerializing` reports
  success, so the dump always covers what the journal was compacted past.
* **An install and a write in progress never race.** :meth:`install_received` first stops a
  child that is still writing, so an older dump can never land over a newer installed one.

Writers are a seam: :class:`InlineWriter` (synchronous) and the tests' deferred writer finish
the same job at a moment the caller chooses.

Threads: every method runs on the thread that ticks PySyncObj.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pysyncobj.config import SERIALIZER_STATE

from hacoord.core.model import ClusterState
from hacoord.replication.base import MemberInfo
from hacoord.replication.forking import become_child
from hacoord.replication.snapshot import (
    SnapshotError,
    SnapshotHeader,
    encode_snapshot,
    read_snapshot,
)
from hacoord.replication.steps import STEPS
from hacoord.replication.storage import (
    FaultHook,
    StorageError,
    fsync_dir,
    open_private,
    replace_atomically,
    write_all,
)

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 16

Encode = Callable[[], bytes]
Persist = Callable[[bytes], None]


class SnapshotWriter(Protocol):
    """Runs ``persist(encode())`` for one snapshot, maybe elsewhere; one job at a time."""

    def start(self, encode: Encode, persist: Persist) -> None:
        """Begin the job (``encode`` must see the state as it is now)."""

    def poll(self) -> tuple[bool, str] | None:
        """None while running; then ``(ok, error message)`` once."""

    def cancel(self) -> None:
        """Stop the job now if it still runs; its result is never reported."""


class InlineWriter:
    """Does the whole job inside :meth:`start` (tests; platforms without ``fork``)."""

    def __init__(self) -> None:
        self._result: tuple[bool, str] | None = None

    def start(self, encode: Encode, persist: Persist) -> None:
        try:
            persist(encode())
            self._result = (True, "")
        except Exception as exc:
            self._result = (False, str(exc))

    def poll(self) -> tuple[bool, str] | None:
        result, self._result = self._result, None
        return result

    def cancel(self) -> None:
        self._result = None


class ForkWriter:
    """Runs the job in a forked child: the state is frozen by copy-on-write at the fork, and
    the encoding, writing and fsync cost the member's event loop nothing.

    The child dies with its parent (``PR_SET_PDEATHSIG``), so a child of a crashed member can
    never rename an old dump over one a restarted member has installed since.
    """

    def __init__(self) -> None:
        self._pid = 0
        self._pipe = -1

    def start(self, encode: Encode, persist: Persist) -> None:
        parent = os.getpid()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 1
            try:
                os.close(read_end)
                become_child(parent)
                persist(encode())
                status = 0
            except BaseException as exc:  # noqa: BLE001 (reported to the parent, then exit)
                with contextlib.suppress(BaseException):
                    os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:2000])
            finally:
                os._exit(status)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def poll(self) -> tuple[bool, str] | None:
        if not self._pid:
            return None
        pid, status = os.waitpid(self._pid, os.WNOHANG)
        if pid == 0:
            return None
        message = self._finish()
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            return True, ""
        return False, message or f"snapshot writer exited with status {code}"

    def cancel(self) -> None:
        if not self._pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._finish()

    def _finish(self) -> str:
        message = b""
        with contextlib.suppress(OSError):
            message = os.read(self._pipe, 4096)
        with contextlib.suppress(OSError):
            os.close(self._pipe)
        self._pid, self._pipe = 0, -1
        return message.decode(errors="replace")


def default_writer() -> SnapshotWriter:
    return ForkWriter() if hasattr(os, "fork") else InlineWriter()


class SnapshotStore:
    """A member's dump file (``path``), its staging files, and PySyncObj's ``Serializer``
    interface over them. ``state`` returns the state machine's current state.

    Public attributes: ``header`` (what the dump on disk covers, or None), ``writes`` and
    ``write_failures`` (own dumps finished), ``last_write_seconds``, ``last_error``.
    """

    def __init__(self, path: str | Path, state: Callable[[], ClusterState],
                 writer: SnapshotWriter | None = None, durable: bool = True,
                 fault: FaultHook | None = None, chunk_size: int = CHUNK_SIZE,
                 members_at: Callable[[int], tuple[MemberInfo, ...]] = lambda _index: ()) -> None:
        self.path = Path(path)
        #: The membership in force at a log index (written into each dump's header).
        self._members_at = members_at
        self.received_path = self.path.with_name(self.path.name + ".received")
        self.incoming_path = self.path.with_name(self.path.name + ".incoming")
        self._state = state
        self.writer = writer or default_writer()
        self.durable = durable
        self.fault = fault
        self.chunk_size = chunk_size
        self.header: SnapshotHeader | None = None
        self.writes = 0
        self.write_failures = 0
        self.last_write_seconds = 0.0
        self.last_error: str | None = None
        self._job: tuple[int, SnapshotHeader, float] | None = None
        self._sending: dict[Any, BinaryIO] = {}
        #: Transmissions of the dump to followers begun (each one sends it whole).
        self.transmissions = 0
        self._incoming: int | None = None
        self._incoming_size = 0

    def discard_leftovers(self) -> None:
        """At start: staging files of an earlier run were never installed; drop them."""
        for leftover in (self.received_path, self.incoming_path,
                         self.path.with_name(self.path.name + ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def load(self, with_state: bool = True) -> tuple[SnapshotHeader, ClusterState | None]:
        """Read and check the dump. Raises ``OSError`` or :class:`SnapshotError`."""
        header, state = read_snapshot(self.path, with_state)
        self.header = header
        return header, state

    # --- own dumps (PySyncObj's Serializer.serialize / checkSerializing) ----------------------

    def serialize(self, data: tuple[Any, ...], serialize_id: int) -> None:
        """Start writing a dump of the current state; ``data`` is the library's
        ``(None, last entry, previous entry, member set)``."""
        if self._job is not None:
            return
        _, last, prev, cluster = data
        raft_data = (tuple(last), tuple(prev), list(cluster))
        state = self._state()
        members = self._members_at(raft_data[0][1]) or None
        header = SnapshotHeader(raft_data[0], raft_data[1],
                                tuple(sorted(getattr(n, "address", str(n)) for n in cluster)),
                                members)
        try:
            with STEPS.timed("fork for snapshot"):
                self.writer.start(lambda: encode_snapshot(state, raft_data, members), self._persist)
        except OSError as exc:  # no process or pipe to be had (out of descriptors, memory)
            self.write_failures += 1
            self.last_error = str(exc)
            log.warning("snapshot at index %d not started (tried again later): %s",
                        header.index, exc)
            return
        self._job = (serialize_id, header, time.monotonic())

    def _persist(self, data: bytes) -> None:
        """Runs in the writer: the dump replaced atomically (0600, synced, directory synced)."""
        replace_atomically(self.path, data, self.durable, self.fault)

    def checkSerializing(self) -> tuple[int, int | None]:  # noqa: N802 (library's name)
        if self._job is None:
            return SERIALIZER_STATE.NOT_SERIALIZING, None
        result = self.writer.poll()
        serialize_id, header, started = self._job
        if result is None:
            return SERIALIZER_STATE.SERIALIZING, serialize_id
        self._job = None
        self.last_write_seconds = time.monotonic() - started
        ok, error = result
        if ok:
            self.header = header
            self.writes += 1
            return SERIALIZER_STATE.SUCCESS, serialize_id
        self.write_failures += 1
        self.last_error = error
        log.warning("snapshot at index %d not written (the journal stays uncompacted until the "
                    "next try): %s", header.index, error)
        return SERIALIZER_STATE.FAILED, serialize_id

    @property
    def writing(self) -> bool:
        """True while an own dump is being written (from :meth:`serialize` until
        :meth:`checkSerializing` reports how it ended)."""
        return self._job is not None

    @property
    def sending(self) -> bool:
        """True while the dump is being sent to some follower."""
        return bool(self._sending)

    def cancel_write(self) -> None:
        """Stop a dump still being written; its success is never reported."""
        if self._job is not None:
            self.writer.cancel()
            self._job = None

    def deserialize(self) -> tuple[Any, ...]:
        """The library's view of the dump: ``(None, last, prev, cluster)`` (state not loaded)."""
        with STEPS.timed("read snapshot header"):
            header, _ = self.load(with_state=False)
        return None, header.last, header.prev, list(header.cluster)

    # --- sending the dump to a follower (leader side) -----------------------------------------

    def getTransmissionData(self, transmissionID: Any) -> tuple[bytes, bool, bool] | None:  # noqa: N802,N803
        """The next chunk of the dump for one follower: ``(data, is_first, is_last)``; None if
        there is nothing to send (no dump yet, or it cannot be read)."""
        f = self._sending.get(transmissionID)
        first = f is None
        try:
            if f is None:
                f = self._sending[transmissionID] = open(self.path, "rb")  # noqa: SIM115
                self.transmissions += 1
            data = f.read(self.chunk_size)
        except OSError as exc:
            log.warning("cannot send snapshot %s: %s", self.path, exc)
            self.cancelTransmisstion(transmissionID)
            return None
        last = not data
        if last:
            self.cancelTransmisstion(transmissionID)
        return data, first, last

    def cancelTransmisstion(self, transmissionID: Any) -> None:  # noqa: N802,N803 (library's spelling)
        f = self._sending.pop(transmissionID, None)
        if f is not None:
            f.close()

    # --- receiving one (follower side) --------------------------------------------------------

    def setTransmissionData(self, data: tuple[bytes, bool, bool] | None) -> bool:  # noqa: N802
        """Take one chunk; True once a whole snapshot is staged in ``<dump>.received``."""
        if not data:
            return False
        chunk, first, last = data
        try:
            if first:
                self._close_incoming()
                self._incoming = open_private(self.incoming_path,
                                              os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                self._incoming_size = 0
            if self._incoming is None:
                return False  # a chunk without its start
            if chunk:
                write_all(self._incoming, chunk, self._incoming_size)
                self._incoming_size += len(chunk)
            if not last:
                return False
            if self.durable:
                os.fsync(self._incoming)
            self._close_incoming()
            os.replace(self.incoming_path, self.received_path)
            return True
        except OSError as exc:
            log.warning("cannot stage a received snapshot: %s",
                        StorageError("write", self.incoming_path, exc))
            self._close_incoming()
            with contextlib.suppress(OSError):
                self.incoming_path.unlink()
            return False

    def _close_incoming(self) -> None:
        if self._incoming is not None:
            with contextlib.suppress(OSError):
                os.close(self._incoming)
            self._incoming = None

    def read_received(self, with_state: bool = True) -> tuple[SnapshotHeader, ClusterState | None]:
        """The staged snapshot, checked. Raises ``OSError`` or :class:`SnapshotError`."""
        return read_snapshot(self.received_path, with_state)

    def discard_received(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.received_path.unlink()

    def install_received(self, header: SnapshotHeader) -> None:
        """Make the staged snapshot the member's dump (durably). A dump still being written is
        stopped first. Raises :class:`StorageError`."""
        self.cancel_write()
        try:
            if self.fault is not None:
                self.fault("snapshot.install:before-rename")
            os.replace(self.received_path, self.path)
            if self.durable:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise StorageError("install snapshot", self.path, exc) from None
        self.header = header

    def close(self) -> None:
        """Stop a write in progress and close open files (the member stops)."""
        self.cancel_write()
        for transmission in list(self._sending):
            self.cancelTransmisstion(transmission)
        self._close_incoming()


__all__ = ["ForkWriter", "InlineWriter", "SnapshotError", "SnapshotStore", "SnapshotWriter",
           "default_writer"]
