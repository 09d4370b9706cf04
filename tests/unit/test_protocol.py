"""One table of error codes (hacoord.protocol.ErrorCode) for server, client and documentation:
every code the source can answer with is in it, the server's statuses come from it, the client
has an exception class for each, and the OpenAPI error schema lists exactly its codes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hacoord
from hacoord.client.errors import _CLASS_BY_CODE, ServiceUnavailable, error_for
from hacoord.protocol import ErrorCode
from hacoord.server.errors import STATUS_BY_CODE
from hacoord.server.openapi import ERROR_SCHEMA

ROOT = Path(hacoord.__file__).parent
#: Calls that carry an error code, and the position of the code among their arguments.
CODE_ARGUMENT = {"ApiError": 0, "ErrorReply": 0, "Rejected": 0, "_Reject": 0, "error_body": 0, "_require": 1,
                 "_refuse": 3}


def codes_in_source() -> set[str]:
    found = set()
    for path in (ROOT / "core").rglob("*.py"), (ROOT / "server").rglob("*.py"):
        for file in path:
            for node in ast.walk(ast.parse(file.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                position = CODE_ARGUMENT.get(name or "")
                if position is None or len(node.args) <= position:
                    continue
                argument = node.args[position]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.add(argument.value)
    return found


def test_every_code_the_source_answers_with_is_in_the_table() -> None:
    found = codes_in_source()
    assert {"not_found", "stale_epoch", "request_too_large", "internal_error"} <= found
    assert found <= {code.value for code in ErrorCode}, found - {c.value for c in ErrorCode}


def test_the_server_documents_and_answers_with_the_tables_statuses() -> None:
    assert STATUS_BY_CODE == {code.value: code.status for code in ErrorCode}
    assert ERROR_SCHEMA["properties"]["code"]["enum"] == sorted(code.value for code in ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_the_client_raises_a_class_that_agrees_with_the_code(code: ErrorCode) -> None:
    assert code in _CLASS_BY_CODE
    raised = error_for(code.value, "message", code.status)
    assert type(raised) is _CLASS_BY_CODE[code] and raised.code == code.value
    # Retried by the client exactly when the table says a retry helps (429 waits for its
    # Retry-After, which the caller sees).
    assert isinstance(raised, ServiceUnavailable) == (code.retryable and code.status >= 500)


def test_a_code_this_version_does_not_know_falls_back_on_the_status() -> None:
    assert ErrorCode.lookup("from_the_future") is None
    assert isinstance(error_for("from_the_future", "m", 503), ServiceUnavailable)
