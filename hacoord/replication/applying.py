"""Applying a command where the replicas do it: :func:`hacoord.core.apply.apply`, and the log line
for the bug behind an ``internal_error`` (core does no I/O, so the exception travels back in the
outcome and is logged here)."""

from __future__ import annotations

import logging

from hacoord.core.apply import apply
from hacoord.core.commands import Command, DecodeError
from hacoord.core.model import ClusterState
from hacoord.core.results import Outcome, Rejected

log = logging.getLogger(__name__)


def apply_logged(state: ClusterState, command: Command | DecodeError) -> Outcome:
    """``apply(state, command)``; an internal error is logged with its traceback."""
    outcome = apply(state, command)
    if isinstance(outcome, Rejected) and outcome.error is not None:
        log.error("internal error applying %r", command, exc_info=outcome.error)
    return outcome
