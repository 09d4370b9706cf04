"""Heavy pure computations (placement, rebalance plans) run in a forked child, off the event loop.

``await offload(fn, *args)`` forks the member: the child sees the state exactly as it was at the
fork (copy-on-write, nothing copied or pickled on the way in), runs ``fn(*args)`` on the other
core, pickles the result into a pipe and exits; the parent's event loop - Raft ticks included -
goes on meanwhile and reads the answer when it is ready. A fork costs a few milliseconds, so
work below ``inline_below`` (an estimate of its size the caller gives, in replicas) simply runs
inline: :data:`INLINE_BELOW` replicas place in a few milliseconds with 1,000 nodes (10,000
took 56 ms on a loaded member's loop in ``bench.scale``).

Only pure functions of their arguments belong here (the child's changes are lost with it), and
only results that pickle small. The child dies with its parent (``PR_SET_PDEATHSIG``) and is
killed after ``timeout`` seconds. At most ``MAX_CHILDREN`` run at once.

Threads: the event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hacoord.replication.forking import become_child
from hacoord.replication.steps import STEPS

T = TypeVar("T")

MAX_CHILDREN = 2
INLINE_BELOW = 2_000
DEFAULT_TIMEOUT = 120.0

_slots: asyncio.Semaphore | None = None
_slots_loop: asyncio.AbstractEventLoop | None = None


class OffloadError(RuntimeError):
    """The child failed (its exception's type and message), or did not answer in time."""


def _semaphore() -> asyncio.Semaphore:
    global _slots, _slots_loop
    loop = asyncio.get_running_loop()
    if _slots is None or _slots_loop is not loop:
        _slots, _slots_loop = asyncio.Semaphore(MAX_CHILDREN), loop
    return _slots


async def offload(fn: Callable[..., T], *args: Any, size: int = 0, inline_below: int = INLINE_BELOW,
                  timeout: float = DEFAULT_TIMEOUT, name: str | None = None) -> T:
    """``fn(*args)`` computed in a forked child when ``size >= inline_below`` (see the module
    docstring), else here. Raises :class:`OffloadError` if the child fails or times out."""
    label = name or getattr(fn, "__name__", "work")
    if size < inline_below or not hasattr(os, "fork"):
        with STEPS.timed(label):
            return fn(*args)
    async with _semaphore():
        return await _in_child(fn, args, timeout, label)


async def _in_child(fn: Callable[..., T], args: tuple[Any, ...], timeout: float, label: str) -> T:
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            become_child(parent)
            try:
                payload = pickle.dumps((True, fn(*args)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # noqa: BLE001 (reported to the parent)
                payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view):]
        finally:
            os._exit(0)
    os.close(write_end)
    STEPS.note(f"fork for {label}", time.perf_counter() - started)
    os.set_blocking(read_end, False)
    chunks: list[bytes] = []
    finished = loop.create_future()

    def readable() -> None:
        while True:
            try:
                data = os.read(read_end, 1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if not finished.done():
                    finished.set_exception(exc)
                return
            if not data:
                if not finished.done():
                    finished.set_result(None)
                return
            chunks.append(data)

    loop.add_reader(read_end, readable)
    try:
        await asyncio.wait_for(finished, timeout)
    except TimeoutError:
        raise OffloadError(f"{label} took longer than {timeout:.0f}s") from None
    finally:
        loop.remove_reader(read_end)
        os.close(read_end)
        if not finished.done() or finished.cancelled():  # no answer (yet): stop the child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(_reap, pid)
    if not chunks:
        raise OffloadError(f"{label}: the child exited without an answer")
    with STEPS.timed(f"read {label} result"):
        ok, value = pickle.loads(b"".join(chunks))
    if not ok:
        raise OffloadError(f"{label} failed: {value}")
    return value


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
