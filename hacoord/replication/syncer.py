"""Where the journal's ``fdatasync`` runs: on a worker thread in production, inline in tests.

A journal sync takes 0.1-5 ms on a local SSD and tens of milliseconds on a busy or networked
disk; on the member's event loop that time would be taken from Raft's ticks and from every HTTP
request. :class:`ThreadSyncer` runs each sync on one worker thread and tells the loop when it is
done; the journal counts nothing as durable until the loop has collected the result (see
:mod:`hacoord.replication.journal`), and the engine sends no acknowledgement and counts no own
copy towards a commit before that (see :mod:`hacoord.replication.engine`).

:class:`InlineSyncer` does the job inside :meth:`~JournalSyncer.start`, which is what a journal
without a worker does (tests, tools). The deterministic simulation has its own, finishing a job
when the schedule says.

Threads: ``start``, ``poll`` and ``wait`` are called from the ticking thread only; the job runs
on the worker thread, which touches nothing but the file descriptor it syncs and the result.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

#: One sync of one file (raises OSError on failure; a fault hook may raise anything).
Job = Callable[[], None]
#: ``(True, None)`` when the job succeeded, ``(False, exception)`` when it raised.
Result = tuple[bool, BaseException | None]


class JournalSyncer(Protocol):
    """Runs one sync job at a time, maybe elsewhere."""

    def start(self, job: Job) -> None:
        """Begin ``job``; only called when no job is running."""

    def poll(self) -> Result | None:
        """None while the job runs (or none was started); its result once, when it ended."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running job ends (at most ``timeout`` seconds); False on timeout."""

    def close(self) -> None:
        """No more jobs (a running one still ends; its result may be dropped)."""


class InlineSyncer:
    """Runs the job inside :meth:`start`. OSError is reported through :meth:`poll`; anything
    else (a simulated crash) propagates to the caller."""

    def __init__(self) -> None:
        self._result: Result | None = None

    def start(self, job: Job) -> None:
        try:
            job()
            self._result = (True, None)
        except OSError as exc:
            self._result = (False, exc)

    def poll(self) -> Result | None:
        result, self._result = self._result, None
        return result

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        """Nothing to stop: every job ended inside :meth:`start`."""


class ThreadSyncer:
    """Runs jobs on one daemon worker thread; ``on_done`` is called from that thread after
    each job (the member's loop uses it to tick at once, e.g. ``call_soon_threadsafe``)."""

    def __init__(self, on_done: Callable[[], None] | None = None, name: str = "journal-sync") -> None:
        self.on_done = on_done
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._result: Result | None = None
        self._thread: threading.Thread | None = None

    def start(self, job: Job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._idle.clear()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            result: Result
            try:
                job()
                result = (True, None)
            except BaseException as exc:  # reported to the loop, which fails stop
                result = (False, exc)
            with self._lock:
                self._result = result
            self._idle.set()
            callback = self.on_done
            if callback is not None:
                try:
                    callback()
                except Exception:  # the loop is gone (shutting down): nobody to tell
                    log.debug("journal sync finished after the loop stopped", exc_info=True)

    def poll(self) -> Result | None:
        with self._lock:
            result, self._result = self._result, None
        return result

    def wait(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def close(self) -> None:
        self.on_done = None
        if self._thread is not None:
            self._jobs.put(None)
