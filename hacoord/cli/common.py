"""What every ``hacoord`` command shares: the per-invocation settings and client
(:class:`CliState`), and the ``--json`` and ``--consistent`` options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from hacoord.cli import output

if TYPE_CHECKING:  # loaded by the first command that talks to the cluster, not by `serve`
    from hacoord.client import Client


@dataclass
class CliState:
    """Settings shared by every command of one invocation, and its (lazily made) client."""

    endpoints: str | None = None
    timeout: float = 5.0
    deadline: float = 15.0
    token_file: str | None = None
    ca: str | None = None
    cert: tuple[str, str] | None = None
    as_json: bool = False
    client_factory: Callable[[CliState], Client] | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """The client for this invocation, made on first use and closed when the command ends."""
        if self._client is None:
            from hacoord.client.credentials import TlsFileError, TokenFileError

            factory = self.client_factory or make_client
            try:
                self._client = factory(self)
            except TokenFileError as exc:
                raise click.BadParameter(str(exc), param_hint="'--token-file'") from None
            except TlsFileError as exc:
                raise click.BadParameter(str(exc), param_hint="'--ca'") from None
            except ValueError as exc:  # the settings (endpoints, timeouts) are unusable
                raise click.BadParameter(str(exc), param_hint="'--endpoints'") from None
            click.get_current_context().find_root().call_on_close(self._client.close)
        return self._client

    @property
    def out(self) -> output.Output:
        return output.Output(self.as_json)


def make_client(state: CliState) -> Client:
    """The default factory: a network client over ``--endpoints`` (or ``HACOORD_ENDPOINTS``, or the
    local default cluster). Raises ``ValueError`` for unusable endpoints."""
    from hacoord.client import Client

    return Client(state.endpoints, timeout=state.timeout, deadline=state.deadline,
                  token_file=state.token_file, ca=state.ca, cert=state.cert)


class CliError(click.ClickException):
    """A failure reported as one ``error: ...`` line on stderr with ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        output.error(self.message)


def cli_state() -> CliState:
    """The settings of the running invocation."""
    return click.get_current_context().ensure_object(CliState)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliState).as_json = True


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` on a command; the same as the group's ``--json``."""
    return click.option("--json", is_flag=True, expose_value=False, callback=_set_json,
                        help="Print JSON instead of a table.")(f)


def consistent_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--consistent", is_flag=True,
                        help="Linearizable read: the member answers once the leader "
                        "confirmed a read index (a little slower).")(f)
