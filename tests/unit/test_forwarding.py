"""Forwarding claims (:mod:`hacoord.server.forwarding`) are believed only with a member's seal
over exactly these claims on exactly this request; without a cluster secret, as they come."""

from __future__ import annotations

from typing import Any

import pytest

from hacoord.server.forwarding import Forwarded, ForwardSeal

SECRET = "s" * 24


def scope(via: str | None = "m2", client: str | None = "10.0.0.7", seal: str | None = None,
          method: str = "PATCH", path: str = "/v1/nodes/n1", rid: str | None = "r1") -> dict[str, Any]:
    headers = [(b"host", b"m1.test")]
    for name, value in (("x-hacoord-forwarded", via), ("x-hacoord-client", client),
                        ("x-hacoord-forward-seal", seal), ("x-request-id", rid)):
        if value is not None:
            headers.append((name.encode(), value.encode("latin-1")))
    return {"type": "http", "method": method, "path": path, "headers": headers}


def sealed(**changes: Any) -> dict[str, Any]:
    """A scope whose seal was made for the default claims and request, then ``changes``."""
    seal = ForwardSeal(SECRET).seal("m2", "10.0.0.7", "PATCH", "/v1/nodes/n1", "r1")
    return scope(**{"seal": seal, **changes})


def test_a_members_seal_is_believed() -> None:
    assert ForwardSeal(SECRET).forwarded(sealed()) == Forwarded("m2", "10.0.0.7")


@pytest.mark.parametrize("changes", [
    {"via": "m3"}, {"client": "10.0.0.8"}, {"method": "POST"}, {"path": "/v1/nodes/n2"},
    {"rid": "r2"}, {"rid": None}, {"seal": None}, {"seal": "0" * 64}, {"seal": ""},
])
def test_claims_another_request_or_claims_unsealed_are_not(changes: dict[str, Any]) -> None:
    assert ForwardSeal(SECRET).forwarded(sealed(**changes)) is None


def test_another_clusters_seal_is_not() -> None:
    assert ForwardSeal("t" * 24).forwarded(sealed()) is None


def test_without_a_secret_claims_are_believed_as_they_come_and_nothing_is_sealed() -> None:
    open_seal = ForwardSeal(None)
    assert open_seal.seal("m2", "10.0.0.7", "PATCH", "/v1/nodes/n1", "r1") is None
    assert open_seal.forwarded(scope()) == Forwarded("m2", "10.0.0.7")
    assert open_seal.forwarded(scope(via=None)) is None


def test_the_answer_is_kept_in_the_scope_and_claims_are_bounded() -> None:
    long = scope(via="m" * 500, client="c" * 500)
    open_seal = ForwardSeal(None)
    first = open_seal.forwarded(long)
    assert first is not None and len(first.via) == len(first.client) == 128
    long["headers"] = []  # asked again for the same request: not worked out again
    assert open_seal.forwarded(long) == first


def test_the_first_request_id_counts_as_for_the_handlers() -> None:
    """A seal made for one request id, sent after another id: the handlers would use the first
    (a new write), so the seal is not believed for it."""
    replayed = sealed()
    replayed["headers"].insert(0, (b"x-request-id", b"fresh-id"))
    assert ForwardSeal(SECRET).forwarded(replayed) is None
    repeated = sealed()
    repeated["headers"].append((b"x-request-id", b"other"))
    assert ForwardSeal(SECRET).forwarded(repeated) == Forwarded("m2", "10.0.0.7")


def test_an_answer_kept_by_one_seal_is_not_taken_by_another() -> None:
    """Claims an unkeyed seal believed, kept in the scope, are worked out again by a keyed one."""
    unsealed = scope()
    assert ForwardSeal(None).forwarded(unsealed) == Forwarded("m2", "10.0.0.7")
    assert ForwardSeal(SECRET).forwarded(unsealed) is None
