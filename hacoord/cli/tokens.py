"""``hacoord token``: API tokens (create, list, revoke, whoami) and ``generate``, which writes
the first admin token file for the members of a new cluster."""

from __future__ import annotations

import os
import re

import click

from hacoord.cli.common import CliError, json_option
from hacoord.cli.common import cli_state as _state
from hacoord.cli.output import table, timestamp
from hacoord.protocol.tokens import new_token

ROLES = ("admin", "operator", "node", "reader")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_LIFETIME = 10 * 365 * 86_400


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    seconds = float(match.group(1)) * _UNIT[match.group(2)] if match else 0.0
    if not 0 < seconds <= MAX_LIFETIME:
        raise click.BadParameter(f"expected a duration such as 90s, 15m, 12h or 30d (at most "
                                 f"3650d), got {value!r}", param_hint="'--expires'")
    return seconds


@click.group()
def token() -> None:
    """API tokens: who may call the cluster, in which role."""


@token.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="admin: everything; operator: nodes, resources, moves, rebalance; node: one "
                   "node's own reports (needs --node); reader: every read.")
@click.option("--node", "node_id", metavar="ID", help="The node a node token speaks for.")
@click.option("--expires", callback=_duration, metavar="DURATION",
              help="Refused after this long (90s, 15m, 12h, 30d); default: never.")
@json_option
def token_create(name: str, role: str, node_id: str | None, expires: float | None) -> None:
    """Create token NAME and print its secret: this is the only time it is shown."""
    if (role == "node") != (node_id is not None):
        raise click.BadParameter("a node token needs --node, and only a node token takes it",
                                 param_hint="'--node'")
    state = _state()
    created = state.client().token_create(name, role, node=node_id, expires_in=expires)
    if state.out.as_json:
        state.out.document({"revision": created.revision, "token": created.token.to_dict(),
                            "secret": created.secret})
        return
    bound = f" for node {node_id}" if node_id else ""
    click.echo(f"token {name} (role {role}{bound}) created (revision {created.revision}); its "
               "secret, shown this once:", err=True)
    click.echo(created.secret)


@token.command("list")
@json_option
def token_list() -> None:
    """Every token: name, role, node, created, expires (never a secret)."""
    state = _state()
    tokens = state.client().token_list()
    if state.out.as_json:
        state.out.document([t.to_dict() for t in tokens])
        return
    click.echo(table(["NAME", "ROLE", "NODE", "CREATED", "EXPIRES"], [
        [t.name, t.role, t.node or "-", timestamp(t.created_at),
         ("expired " if t.expired else "") + (timestamp(t.expires_at) or "never")]
        for t in tokens]))


@token.command("revoke")
@click.argument("name")
@json_option
def token_revoke(name: str) -> None:
    """Revoke token NAME: every member refuses it from now on."""
    state = _state()
    result = state.client().token_revoke(name)
    unconfirmed = result.data.get("unconfirmed") or []
    note = (f"not confirmed by {', '.join(unconfirmed)} (unreachable?); they refuse it once "
            "they catch up") if unconfirmed else None
    state.out.written(result, f"token {name} revoked", note)


@token.command("whoami")
@json_option
def token_whoami() -> None:
    """The token this command sends, as the cluster knows it."""
    state = _state()
    me = state.client().whoami()
    if state.out.as_json:
        state.out.document(me.to_dict())
        return
    click.echo(f"{me.name} (role {me.role}{f', node {me.node}' if me.node else ''})")


@click.command("audit")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="List the changes after this revision.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@json_option
def audit(since: int, limit: int) -> None:
    """Who changed what: each revision's command, token (name and role; "system" for the
    leader's own decisions), source address, request id, and the changes it made."""
    state = _state()
    entries = state.client().audit(since, limit)
    if state.out.as_json:
        state.out.document([e.to_dict() for e in entries])
        return
    click.echo(table(["REVISION", "TIME", "BY", "ROLE", "FROM", "COMMAND", "CHANGES"], [
        [e.revision, timestamp(e.time), e.principal or "-", e.role or "-",
         f"{e.client or e.source} via {e.via}" if e.via else (e.source or "-"), e.command or "-",
         ",".join(dict.fromkeys(e.changes))] for e in entries]))


@token.command("generate")
@click.argument("path", type=click.Path(dir_okay=False))
def token_generate(path: str) -> None:
    """Write a new token to PATH (mode 0600; refused if PATH exists): the first admin token of a
    new cluster, for every member's --admin-token-file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CliError(f"cannot create {path}: {exc.strerror}", 2) from None
    with os.fdopen(fd, "w") as f:
        f.write(new_token() + "\n")
    click.echo(f"wrote a new token to {path}; give every member of the new cluster this file "
               "(--admin-token-file) and keep it as secret as the cluster secret")
