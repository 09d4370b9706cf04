"""API tokens in the state machine: created, revoked and bootstrapped through ``apply`` only
with valid values, stored as digests, found by digest after a snapshot round trip."""

from __future__ import annotations

import pytest

from hacoord.core import ClusterState, apply
from hacoord.core import commands as c
from hacoord.core.access import token_hash, well_formed
from hacoord.core.codec import decode_state, digest, encode_state
from hacoord.core.model import valid_address, valid_id
from hacoord.protocol.tokens import new_token

T0 = 1000.0


def create(state: ClusterState, name: str, role: str, secret: str, **fields: object) -> object:
    return apply(state, c.CreateToken(name=name, role=role, hash=token_hash(secret), time=T0,
                                      **fields))  # type: ignore[arg-type]


def test_create_revoke_and_lookup_by_digest() -> None:
    state, secret = ClusterState(), new_token()
    outcome = create(state, "ops", "operator", secret, expires_at=T0 + 60)
    assert outcome.ok and outcome.result["token"]["expires_at"] == T0 + 60  # type: ignore[attr-defined]
    found = state.token_by_hash(token_hash(secret))
    assert found is not None and found.name == "ops" and not found.expired(T0 + 59)
    assert found.expired(T0 + 60)
    assert apply(state, c.RevokeToken(name="ops", time=T0)).ok
    assert state.token_by_hash(token_hash(secret)) is None and state.tokens == {}


@pytest.mark.parametrize(("fields", "code"), [
    ({"name": "bad name"}, "invalid_argument"),
    ({"role": "root"}, "invalid_argument"),
    ({"role": "node"}, "invalid_argument"),  # no node
    ({"role": "reader", "node": "n1"}, "invalid_argument"),
    ({"hash": "abc"}, "invalid_argument"),
    ({"expires_at": T0}, "invalid_argument"),
    ({"expires_at": float("nan")}, "invalid_argument"),
    ({"name": "admin"}, "already_exists"),  # kept for the bootstrap token
    ({"name": "taken"}, "already_exists"),
])
def test_bad_tokens_are_rejected_and_change_nothing(fields: dict[str, object], code: str) -> None:
    state = ClusterState()
    assert create(state, "taken", "reader", new_token()).ok  # type: ignore[attr-defined]
    before = digest(state)
    base = {"name": "x", "role": "reader", "hash": token_hash(new_token()), "time": T0}
    outcome = apply(state, c.CreateToken(**{**base, **fields}))  # type: ignore[arg-type]
    assert not outcome.ok and outcome.code == code  # type: ignore[union-attr]
    assert digest(state) == before


def test_the_same_secret_cannot_be_two_tokens() -> None:
    state, secret = ClusterState(), new_token()
    assert create(state, "one", "reader", secret).ok  # type: ignore[attr-defined]
    again = create(state, "two", "admin", secret)
    assert not again.ok and again.code == "already_exists"  # type: ignore[attr-defined]


def test_bootstrap_happens_once() -> None:
    state, secret = ClusterState(), new_token()
    assert apply(state, c.BootstrapAdmin(hash=token_hash(secret), time=T0)).ok
    assert state.auth_bootstrapped and state.tokens["admin"].role == "admin"
    again = apply(state, c.BootstrapAdmin(hash=token_hash(new_token()), time=T0))
    assert not again.ok and again.code == "already_exists"  # type: ignore[union-attr]
    assert apply(state, c.RevokeToken(name="admin", time=T0)).ok
    assert state.auth_bootstrapped  # revoking it does not open the door to another bootstrap


def test_tokens_survive_a_snapshot_and_are_found_by_digest() -> None:
    state, secret = ClusterState(), new_token()
    apply(state, c.BootstrapAdmin(hash=token_hash(new_token()), time=T0))
    create(state, "agent", "node", secret, node="n1")
    restored = decode_state(encode_state(state))
    assert digest(restored) == digest(state) and restored.auth_bootstrapped
    found = restored.token_by_hash(token_hash(secret))
    assert found is not None and (found.name, found.role, found.node) == ("agent", "node", "n1")
    assert secret not in encode_state(state).decode()


def test_commands_round_trip_through_the_wire_form() -> None:
    command = c.CreateToken(name="x", role="reader", hash=token_hash(new_token()), time=T0,
                            expires_at=T0 + 5)
    assert c.decode(c.encode(command)) == command
    assert isinstance(c.decode(b'{"type":"CreateToken","secret":"x"}'), c.DecodeError)


def test_a_trailing_newline_is_no_part_of_an_id_an_address_or_a_token() -> None:
    """Python's ``$`` also matches before a final newline: the formats are whole-string
    matches, as the API's validation (pydantic's regular expressions) makes them."""
    assert valid_id("n1") and not valid_id("n1\n")
    assert valid_address("h:1") and not valid_address("h:1\n")
    token = new_token()
    assert well_formed(token) and not well_formed(token + "\n")
