"""A member's files on disk: the errors that stop it, and the careful ways it writes them.

Two kinds of trouble, two answers:

* :class:`StorageError` - an operation failed *now* (``ENOSPC``, ``EIO``, a short write, a failed
  ``fdatasync``). Nothing written after the last successful sync may be trusted, so the member
  fails stop: it stops taking part in Raft (no acknowledgement, no vote, no commit counted), says
  so once, loudly, and later reopens its data from what is durable.
* :class:`StorageCorrupt` - what is on disk cannot be what this member wrote and synced (a bad
  record followed by good ones, a snapshot whose checksum does not match, a journal compacted past
  a snapshot that is missing). The member refuses to start, with one line naming the file, the
  offset and the way out (``hacoord member rejoin``), rather than start with less than it
  acknowledged.

Files are created 0600 and directories 0700, always (umask plays no part): the journal and
snapshots hold the cluster's whole state. A file is replaced atomically: written to a temporary
name beside it, synced, renamed over the old one, and the directory synced.

``FaultHook`` is the seam the deterministic tests use to stop a member at a named point (inside a
journal sync, between a snapshot's rename and the journal's compaction, ...); production passes
``None``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path

from hacoord.replication.base import ReplicationError

FILE_MODE = 0o600
DIR_MODE = 0o700

#: Called with the name of a point in a storage operation; may raise to simulate a crash there.
FaultHook = Callable[[str], None]

UPGRADE_HINT = ("nothing is damaged: start this member with a hacoord release that reads it "
                "(the one that wrote it, or newer)")
REJOIN_HINT = ("the other members still hold the cluster's data: run `hacoord member rejoin "
               "--data-dir {data_dir}` to move this member's files aside and let it catch up "
               "from them")


class StorageError(ReplicationError):
    """A read, write or sync of the member's data failed; the member must fail stop."""

    def __init__(self, operation: str, path: str | Path, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else _describe(cause)
        super().__init__(f"{operation} of {path} failed: {reason}")
        self.operation = operation
        self.path = str(path)
        self.errno = cause.errno if isinstance(cause, OSError) else None
        #: Set by :func:`replace_atomically` when the new file had already replaced the old
        #: one (its content synced) and only the directory's sync failed.
        self.renamed = False


class NewerRelease(ReplicationError):
    """Data (a log entry, a snapshot) written by a newer hacoord than this member's: it cannot
    apply or install it the way the members that can read it do, so it stops."""


class StorageCorrupt(ReplicationError):
    """The member's data on disk is damaged; it must not start from it.

    ``str()`` is the one line the member logs before it exits: the file, the offset when one
    applies, what is wrong, and what the operator can do.
    """

    def __init__(self, path: str | Path, problem: str, offset: int | None = None,
                 data_dir: str | Path | None = None, hint: str | None = None) -> None:
        where = f"{path}" if offset is None else f"{path} at offset {offset}"
        hint = hint or REJOIN_HINT.format(data_dir=data_dir or Path(path).parent)
        super().__init__(f"refusing to start: {where}: {problem}; {hint}")
        self.path = str(path)
        self.offset = offset
        self.problem = problem


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"[{errno.errorcode.get(exc.errno, exc.errno)}] {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if (path.stat().st_mode & 0o777) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside directory ``path`` durable."""
    fd = RESERVE.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Reserve:
    """A few descriptors held back for the member's own files: when the process runs out of
    descriptors (a flood of connections), writing the vote or a snapshot must still work, or
    the member would fail stop for want of a descriptor rather than of a disk."""

    SIZE = 4

    def __init__(self) -> None:
        self.fds: list[int] = []

    def fill(self) -> None:
        while len(self.fds) < self.SIZE:
            try:
                self.fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def open(self, path: Path, flags: int, mode: int) -> int:
        try:
            return os.open(path, flags, mode)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or not self.fds:
                raise
        os.close(self.fds.pop())
        try:
            return os.open(path, flags, mode)
        finally:
            self.fill()


RESERVE = _Reserve()
RESERVE.fill()


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600, and 0600 enforced on an existing file too (using the
    descriptor reserve when the process has none left)."""
    fd = RESERVE.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        if (os.fstat(fd).st_mode & 0o777) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset``; a short write raises ``OSError(ENOSPC)``."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "short write")
        view = view[written:]
        offset += written


def replace_atomically(path: Path, data: bytes, durable: bool = True,
                       fault: FaultHook | None = None) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename (0600).

    Raises :class:`StorageError`: the old file is then untouched and the temporary removed,
    unless the error's ``renamed`` is set (only the directory sync after the rename failed: the
    path names the new, synced file, and the rename itself may not survive a power loss).
    """
    tmp = path.with_name(path.name + ".tmp")
    renamed = False
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, data, 0)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if fault is not None:
            fault(f"replace:{path.name}:before-rename")
        os.replace(tmp, path)
        renamed = True
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        error = StorageError("replace (directory sync)" if renamed else "write",
                             path, exc)
        error.renamed = renamed
        raise error from None

