"""``hacoord serve`` (one member) and ``hacoord cluster up`` (a local cluster of members).

Settings come from flags, then ``HACOORD_*`` environment variables, then the ``--config`` TOML
file (click's ``default_map``), then defaults. A bad setting prints one line naming its key and
exits with status 2.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

from hacoord.protocol.local import ADMIN_TOKEN_FILE
from hacoord.replication.storage import ensure_private_dir, open_private
from hacoord.server.settings import (
    DEFAULT_BASE_PORT,
    DEFAULT_DATA_DIR,
    LOOPBACK,
    ConfigError,
    MemberSettings,
    ensure_admin_token,
    ensure_secret,
    local_members,
    parse_peer,
    read_toml,
)


def _fail(message: str, status: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> str | None:
    """Eager: turn the TOML file into click's default_map before other options resolve."""
    if path:
        try:
            ctx.default_map = {**(ctx.default_map or {}), **read_toml(path)}
        except ConfigError as exc:
            _fail(f"config error: {exc}")
    return path


@click.command()
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_config, envvar="HACOORD_CONFIG", help="TOML file with these settings.")
@click.option("--member-id", envvar="HACOORD_MEMBER_ID", help="This member's id, e.g. m1.")
@click.option("--raft-address", envvar="HACOORD_RAFT_ADDRESS", help="HOST:PORT the Raft peer port binds.")
@click.option("--api-address", envvar="HACOORD_API_ADDRESS", help="HOST:PORT the HTTP API binds.")
@click.option("--advertise-api-url", envvar="HACOORD_ADVERTISE_API_URL",
              help="URL peers use to reach this API (default http://API_ADDRESS).")
@click.option("--peer", "peers", multiple=True, envvar="HACOORD_PEERS",
              help="Another member: ID=RAFT_HOST:PORT,API_URL (repeat; env: space-separated). "
                   "The list may name this member too, as it is: the same list then serves "
                   "every member.")
@click.option("--data-dir", envvar="HACOORD_DATA_DIR", type=click.Path(file_okay=False),
              help="Directory for the journal and snapshots.")
@click.option("--secret-file", envvar="HACOORD_SECRET_FILE", type=click.Path(dir_okay=False),
              help="File holding the cluster secret (mode 0600).")
@click.option("--admin-token-file", envvar="HACOORD_ADMIN_TOKEN_FILE",
              type=click.Path(dir_okay=False),
              help="File holding the first admin token (mode 0600; the same on every member of a "
                   "new cluster; `hacoord token generate FILE` writes one).")
@click.option("--metrics-open", is_flag=True, envvar="HACOORD_METRICS_OPEN",
              help="Serve /metrics without a token (default: a reader token is needed).")
@click.option("--tls-cert", envvar="HACOORD_TLS_CERT", type=click.Path(dir_okay=False),
              help="PEM certificate the API serves HTTPS with.")
@click.option("--tls-key", envvar="HACOORD_TLS_KEY", type=click.Path(dir_okay=False),
              help="PEM private key of --tls-cert (mode 0600).")
@click.option("--tls-client-ca", envvar="HACOORD_TLS_CLIENT_CA", type=click.Path(dir_okay=False),
              help="Mutual TLS: clients must show a certificate signed by this CA.")
@click.option("--tls-ca", envvar="HACOORD_TLS_CA", type=click.Path(dir_okay=False),
              help="CA this member trusts when it calls the other members (default: "
                   "--tls-client-ca, else the system's).")
@click.option("--plain-http", is_flag=True, envvar="HACOORD_PLAIN_HTTP",
              help="Serve the API over plain HTTP (loopback addresses only).")
@click.option("--insecure", is_flag=True, envvar="HACOORD_INSECURE",
              help="Run without a secret (loopback addresses only).")
@click.option("--submit-timeout", type=float, default=5.0, envvar="HACOORD_SUBMIT_TIMEOUT",
              show_default=True, help="Seconds a write may wait for its outcome.")
@click.option("--election-timeout-min", type=float, default=0.3, envvar="HACOORD_ELECTION_TIMEOUT_MIN",
              show_default=True)
@click.option("--election-timeout-max", type=float, default=0.6, envvar="HACOORD_ELECTION_TIMEOUT_MAX",
              show_default=True)
@click.option("--log-compaction-min-entries", type=int, default=5000,
              envvar="HACOORD_LOG_COMPACTION_MIN_ENTRIES", show_default=True,
              help="Snapshot and compact the log after this many entries.")
@click.option("--fsync/--no-fsync", default=True, envvar="HACOORD_FSYNC", show_default=True,
              help="Sync the journal to disk before acknowledging (off: a power loss may lose "
                   "acknowledged writes).")
@click.option("--suspect-after", type=float, default=3.0, envvar="HACOORD_SUSPECT_AFTER",
              show_default=True, help="Seconds without a heartbeat before a data node is suspect.")
@click.option("--down-after", type=float, default=8.0, envvar="HACOORD_DOWN_AFTER",
              show_default=True, help="Seconds without a heartbeat before a data node is down "
                                      "(its leaderships move).")
@click.option("--max-body-bytes", type=int, default=1 << 20, envvar="HACOORD_MAX_BODY_BYTES",
              show_default=True, help="Largest request body (413 beyond).")
@click.option("--max-watches", type=int, default=5000, envvar="HACOORD_MAX_WATCHES",
              show_default=True, help="Open long polls on this member (429 beyond).")
@click.option("--max-watches-per-client", type=int, default=500,
              envvar="HACOORD_MAX_WATCHES_PER_CLIENT", show_default=True,
              help="Open long polls from one client address (429 beyond).")
@click.option("--writes-per-client", type=float, default=1000.0,
              envvar="HACOORD_WRITES_PER_CLIENT", show_default=True,
              help="Writes per second one client address may send (429 beyond; 0: no limit).")
@click.option("--unsafe-no-auth", is_flag=True, hidden=True,
              help="Benchmark baseline only: no token asked for (plain HTTP on loopback only).")
@click.option("--unsafe-stale-reads", is_flag=True, hidden=True,
              help="Chaos canary only: serve consistent reads from local state.")
@click.option("--log-format", default="console", envvar="HACOORD_LOG_FORMAT", show_default=True,
              type=click.Choice(["console", "json"]), help="One event a line, as text or JSON.")
@click.option("--log-level", default="info", envvar="HACOORD_LOG_LEVEL", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(member_id: str | None, raft_address: str | None, api_address: str | None,
          advertise_api_url: str | None, peers: tuple[str, ...], data_dir: str | None,
          secret_file: str | None, admin_token_file: str | None, metrics_open: bool,
          tls_cert: str | None, tls_key: str | None, tls_client_ca: str | None,
          tls_ca: str | None, plain_http: bool, insecure: bool, submit_timeout: float,
          election_timeout_min: float, election_timeout_max: float,
          log_compaction_min_entries: int, fsync: bool, suspect_after: float, down_after: float,
          max_body_bytes: int, max_watches: int, max_watches_per_client: int,
          writes_per_client: float, unsafe_no_auth: bool, unsafe_stale_reads: bool, log_format: str,
          log_level: str) -> None:
    """Run one coordinator member (for deployments across hosts)."""
    try:
        settings = member_settings(
            member_id=member_id, raft_address=raft_address, api_address=api_address,
            advertise_api_url=advertise_api_url, peers=peers, data_dir=data_dir,
            secret_file=secret_file, admin_token_file=admin_token_file, metrics_open=metrics_open,
            tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca, tls_ca=tls_ca,
            plain_http=plain_http, insecure=insecure, submit_timeout=submit_timeout,
            election_timeout_min=election_timeout_min, election_timeout_max=election_timeout_max,
            log_compaction_min_entries=log_compaction_min_entries, fsync=fsync,
            suspect_after=suspect_after, down_after=down_after, max_body_bytes=max_body_bytes,
            max_watches=max_watches, max_watches_per_client=max_watches_per_client,
            writes_per_client=writes_per_client, unsafe_no_auth=unsafe_no_auth,
            unsafe_stale_reads=unsafe_stale_reads)
    except ConfigError as exc:
        _fail(f"config error: {exc}")
    from hacoord.server.logs import setup_logging  # the server stack loads only to serve
    from hacoord.server.member import run_event_loop, serve_member

    setup_logging(settings.member_id, log_level, log_format)

    sys.exit(run_event_loop(serve_member(settings)))


def member_settings(*, member_id: str | None, raft_address: str | None, api_address: str | None,
                    data_dir: str | None, peers: tuple[str, ...], secret_file: str | None,
                    admin_token_file: str | None, tls_cert: str | None, tls_key: str | None,
                    tls_client_ca: str | None, tls_ca: str | None, **options: Any) -> MemberSettings:
    """The settings ``serve``'s options (its parameters, as click resolves them from flags,
    ``HACOORD_*`` variables and the TOML file) stand for, checked as a member starting with them
    would check them, files included; ConfigError naming the first wrong key."""
    for name, value in (("member_id", member_id), ("raft_address", raft_address),
                        ("api_address", api_address), ("data_dir", data_dir)):
        if not value:
            raise ConfigError(name, f"required (flag --{name.replace('_', '-')}, env "
                              f"HACOORD_{name.upper()} or the TOML file)")
    options.pop("log_format", None)
    options.pop("log_level", None)
    listed = [parse_peer(p) for p in _split_peers(peers)]
    settings = MemberSettings(
        member_id=str(member_id), raft_address=str(raft_address), api_address=str(api_address),
        data_dir=Path(str(data_dir)), peers=[p for p in listed if p.id != member_id],
        secret_file=Path(secret_file) if secret_file else None,
        admin_token_file=Path(admin_token_file) if admin_token_file else None,
        **{key: Path(value) for key, value in (("tls_cert", tls_cert), ("tls_key", tls_key),
                                               ("tls_client_ca", tls_client_ca),
                                               ("tls_ca", tls_ca)) if value},
        **options)
    # The peer list may name every member, this one too (the same list on every member): its
    # own entry must then say what this member says of itself.
    for own in (p for p in listed if p.id == member_id):
        if (own.raft_address, own.api_url) != (settings.raft_address, settings.api_url):
            raise ConfigError("peer", f"{own.id} is this member, listed at {own.raft_address},"
                              f"{own.api_url} but it is {settings.raft_address},{settings.api_url}")
    settings.validate()
    settings.read_secret()
    settings.read_admin_token_hash()
    return settings


def _split_peers(peers: tuple[str, ...]) -> list[str]:
    # From the environment click hands one string; peers are then separated by spaces.
    return [p for item in peers for p in item.split()]


@click.group()
def cluster() -> None:
    """Run a local cluster of members on one host."""


@cluster.command("up")
@click.option("--members", "count", type=click.Choice(["3", "5"]), default="3", show_default=True,
              help="How many members.")
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, envvar="HACOORD_DATA_DIR",
              type=click.Path(file_okay=False), help="Each member keeps its data in DIR/<member>.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=DEFAULT_BASE_PORT,
              show_default=True, envvar="HACOORD_BASE_PORT",
              help="Member k serves its API on BASE+k and Raft on BASE+100+k.")
@click.option("--host", default=LOOPBACK, show_default=True, help="Address every member binds.")
def cluster_up(count: str, data_dir: str, base_port: int, host: str) -> None:
    """Start a local cluster and supervise it until Ctrl-C; running it again resumes its state."""
    members = local_members(int(count), base_port, host)
    root = Path(data_dir).absolute()
    try:
        ensure_private_dir(root)  # the secret, the data and the logs: the owner's only
    except OSError as exc:
        _fail(f"cannot use data directory {root}: {exc.strerror}")
    secret = ensure_secret(root / "secret")
    admin_token = ensure_admin_token(root / ADMIN_TOKEN_FILE)
    from hacoord.server.certs import member_tls  # cryptography: not for a member's own start

    tls = {m.id: member_tls(root, m.id, host) for m in members.values()}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    click.echo(f"hacoord: starting {count} members (data in {root}, secret {secret}, "
               f"admin token {admin_token})")
    for member in members.values():
        member_dir = root / member.id
        ensure_private_dir(member_dir)
        argv = [sys.executable, "-m", "hacoord", "serve", "--member-id", member.id,
                "--raft-address", member.raft_address,
                "--api-address", member.api_url.removeprefix("https://"),
                "--data-dir", str(member_dir), "--secret-file", str(secret),
                "--admin-token-file", str(admin_token), "--tls-cert", str(tls[member.id].cert),
                "--tls-key", str(tls[member.id].key), "--tls-ca", str(tls[member.id].ca)]
        for peer in members.values():
            if peer.id != member.id:
                argv += ["--peer", f"{peer.id}={peer.raft_address},{peer.api_url}"]
        log_file = os.fdopen(open_private(member_dir / "member.log",
                                          os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
        procs[member.id] = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        click.echo(f"  {member.id}: api {member.api_url}  raft {member.raft_address}  "
                   f"pid {procs[member.id].pid}  log {member_dir / 'member.log'}")
    if base_port != DEFAULT_BASE_PORT or host != LOOPBACK:
        urls = ",".join(m.api_url for m in members.values())
        click.echo(f"  export HACOORD_ENDPOINTS={urls}")
    click.echo(f"  status page: {members['m1'].api_url}/ui (any member's /ui; sign in with the "
               f"admin token; the browser must trust {tls['m1'].ca})")
    # Both, explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        _report_leader(members, procs, admin_token.read_text().strip(), tls["m1"].ca)
        _supervise(procs)
    except KeyboardInterrupt:
        click.echo("\nhacoord: stopping members")
    finally:
        _stop_all(procs)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _report_leader(members: dict[str, Any], procs: dict[str, subprocess.Popen[bytes]],
                   token: str, ca: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, headers={"Authorization": f"Bearer {token}"},
                      verify=ssl.create_default_context(cafile=str(ca))) as http:
        while time.monotonic() < deadline:
            if all(p.poll() is not None for p in procs.values()):
                return
            for member in members.values():
                try:
                    status = http.get(member.api_url + "/v1/status").json()
                except (httpx.HTTPError, ValueError):
                    continue
                leader = status.get("leader")
                if leader:
                    click.echo(f"hacoord: leader is {leader} (term {status['member']['term']}); "
                               "Ctrl-C stops the cluster")
                    return
            time.sleep(0.2)
    click.echo(f"hacoord: no leader after {timeout:.0f}s; see the member logs", err=True)


def _supervise(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    reported: set[str] = set()
    while len(reported) < len(procs):
        for member_id, proc in procs.items():
            code = proc.poll()
            if code is not None and member_id not in reported:
                reported.add(member_id)
                click.echo(f"hacoord: member {member_id} exited with status {code}", err=True)
        time.sleep(0.5)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
