"""The agent's one retry policy: jittered exponential backoff that stops when the agent stops.

Its waits sleep on the agent's ``stopping`` event, so a thread backing off notices :meth:`stop`
at once instead of sleeping the wait out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import tenacity


def until_stopped(stopping: threading.Event, *, initial: float, maximum: float,
                  attempts: int | None = None,
                  before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
                  ) -> tenacity.Retrying:
    """Retry on any exception, waiting a random time in [0, initial * 2**n] capped at ``maximum``
    seconds, until ``stopping`` is set (or after ``attempts`` attempts). When it stops, the call
    raises :class:`tenacity.RetryError`."""
    stop = tenacity.stop_when_event_set(stopping)
    if attempts is not None:
        stop = stop | tenacity.stop_after_attempt(attempts)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Exception),
        stop=stop,
        wait=tenacity.wait_random_exponential(multiplier=initial, max=maximum),
        sleep=stopping.wait,
        before_sleep=before_sleep,
    )
