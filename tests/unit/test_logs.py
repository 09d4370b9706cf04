"""Member logs: one JSON object a line, with member id and Raft term."""

from __future__ import annotations

import json
import logging

import pytest

from hacoord.server.logs import follow_term, setup_logging


def test_json_lines_carry_member_and_term(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging("m7", "info", "json")
        follow_term(lambda: 42)
        logging.getLogger("hacoord.test").info("hello %s", "world")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("hacoord.test").exception("failed")
        logging.getLogger("httpx").info("HTTP Request: POST https://m1/v1/nodes 201")  # quiet
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        follow_term(lambda: 0)
    assert lines[0] == {**lines[0], "level": "info", "member": "m7", "term": 42,
                        "logger": "hacoord.test", "msg": "hello world"}
    assert lines[1]["level"] == "error" and "ValueError: boom" in lines[1]["exc"]
    assert len(lines) == 2  # the traceback stays inside its event
