"""Member logs: one event a line, as JSON or as readable text, each with member id and Raft term."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

#: Set once the replicator exists; until then the term is logged as 0.
_term_source: list[Callable[[], int]] = []


def follow_term(source: Callable[[], int]) -> None:
    """Make every later log line carry ``source()``, the member's current Raft term."""
    _term_source[:] = [source]


class _MemberContext(logging.Filter):
    def __init__(self, member_id: str) -> None:
        super().__init__()
        self.member_id = member_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.member = self.member_id
        try:
            record.term = _term_source[0]() if _term_source else 0
        except Exception:  # the log line matters more than its term
            record.term = -1
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "member", "term", "logger", "msg"[, "exc"]}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "member": getattr(record, "member", None),
            "term": getattr(record, "term", None),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(member)s[t%(term)s] %(name)s: %(message)s"


def setup_logging(member_id: str, level: str, fmt: str) -> None:
    """Configure the root logger for a member process (``fmt``: ``json`` or ``console``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_MemberContext(member_id))
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(CONSOLE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Quiet at INFO: the library's chatter, and httpx's line per request (a follower forwarding
    # writes under load logged one for each).
    for name in ("pysyncobj", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
