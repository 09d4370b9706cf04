"""Settings of one member, and the layout of a local cluster.

A member is configured by flag, ``HACOORD_*`` environment variable or TOML file, in that order of
precedence (the CLI does the layering; this module validates the result). Every problem is a
:class:`ConfigError` naming the key, so the CLI can print one readable line.

TOML file (``hacoord serve --config member.toml``)::

    member_id = "m1"
    raft_address = "10.0.0.1:7501"      # bind address of the Raft peer port
    api_address = "10.0.0.1:7401"       # bind address of the HTTP API
    data_dir = "/var/lib/hacoord/m1"
    secret_file = "/etc/hacoord/secret"

    [[peers]]
    id = "m2"
    raft_address = "10.0.0.2:7501"
    api_url = "http://10.0.0.2:7401"
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacoord.core.access import token_hash, well_formed
from hacoord.core.model import valid_address, valid_id
from hacoord.protocol.local import LOCAL_DATA_DIR
from hacoord.protocol.tokens import new_token
from hacoord.replication.base import MemberInfo

DEFAULT_BASE_PORT = 7400
DEFAULT_DATA_DIR = LOCAL_DATA_DIR
LOOPBACK = "127.0.0.1"


class ConfigError(ValueError):
    """A setting is missing or malformed; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def api_port(base_port: int, index: int) -> int:
    """API port of member ``index`` (1-based) of a local cluster."""
    return base_port + index


def raft_port(base_port: int, index: int) -> int:
    """Raft port of member ``index`` (1-based) of a local cluster."""
    return base_port + 100 + index


def local_members(count: int, base_port: int = DEFAULT_BASE_PORT,
                  host: str = LOOPBACK) -> dict[str, MemberInfo]:
    """The members ``hacoord cluster up`` starts: m1..mN on ``host``."""
    return {
        f"m{k}": MemberInfo(f"m{k}", f"{host}:{raft_port(base_port, k)}",
                            f"https://{host}:{api_port(base_port, k)}")
        for k in range(1, count + 1)
    }


def default_endpoints(count: int = 3, base_port: int = DEFAULT_BASE_PORT) -> list[str]:
    """API URLs of the default local cluster."""
    return [m.api_url for m in local_members(count, base_port).values()]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_peer(text: str) -> MemberInfo:
    """``ID=RAFT_HOST:PORT,API_URL`` -> MemberInfo (raises ConfigError on key ``peer``)."""
    try:
        member_id, rest = text.split("=", 1)
        raft_address, api_url = rest.split(",", 1)
    except ValueError:
        raise ConfigError("peer", f"expected ID=RAFT_HOST:PORT,API_URL, got {text!r}") from None
    return _member("peer", member_id.strip(), raft_address.strip(), api_url.strip())


def _member(key: str, member_id: str, raft_address: str, api_url: str) -> MemberInfo:
    if not valid_id(member_id):
        raise ConfigError(key, f"malformed member id {member_id!r}")
    if not valid_address(raft_address):
        raise ConfigError(key, f"raft address must be host:port, got {raft_address!r}")
    if not (api_url.startswith("http://") or api_url.startswith("https://")):
        raise ConfigError(key, f"api url must start with http:// or https://, got {api_url!r}")
    return MemberInfo(member_id, raft_address, api_url)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Load a member's TOML file into a flat mapping of setting name -> value."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    peers = data.pop("peers", [])
    if not isinstance(peers, list):
        raise ConfigError("peers", "must be an array of tables")
    flat: dict[str, Any] = {k.replace("-", "_"): v for k, v in data.items()}
    peer_texts = []
    for i, peer in enumerate(peers):
        if not isinstance(peer, dict) or not {"id", "raft_address", "api_url"} <= set(peer):
            raise ConfigError(f"peers[{i}]", "needs id, raft_address and api_url")
        peer_texts.append(f"{peer['id']}={peer['raft_address']},{peer['api_url']}")
    if peer_texts:
        flat["peers"] = peer_texts  # the name of the --peer option's parameter
    return flat


#: Numeric settings: (key, lowest, highest); each must also be finite.
NUMBER_RANGES = (
    ("submit_timeout", 0.1, 600.0),
    ("election_timeout_min", 0.1, 60.0),
    ("election_timeout_max", 0.15, 120.0),
    ("suspect_after", 0.1, 86_400.0),
    ("down_after", 0.2, 86_400.0),
    ("max_body_bytes", 1024, 1 << 30),
    ("max_watches", 1, 1_000_000),
    ("max_watches_per_client", 1, 1_000_000),
    ("writes_per_client", 0, 1e9),
)


@dataclass
class MemberSettings:
    """Everything one member needs to run. Build it, then call :meth:`validate`."""

    member_id: str
    raft_address: str
    api_address: str
    data_dir: Path
    peers: list[MemberInfo] = field(default_factory=list)
    secret_file: Path | None = None
    insecure: bool = False
    advertise_api_url: str | None = None
    submit_timeout: float = 5.0
    election_timeout_min: float = 0.3
    election_timeout_max: float = 0.6
    log_compaction_min_entries: int = 5000
    fsync: bool = True
    unsafe_stale_reads: bool = False
    suspect_after: float = 3.0
    down_after: float = 8.0
    max_body_bytes: int = 1 << 20
    max_watches: int = 5000
    max_watches_per_client: int = 500
    writes_per_client: float = 1000.0
    #: The admin token this member accepts until the cluster is bootstrapped (and writes into
    #: the log if it leads first); every member of a new cluster gets the same file.
    admin_token_file: Path | None = None
    metrics_open: bool = False
    #: HTTPS: the member's certificate and key (PEM); with ``tls_client_ca`` clients must
    #: present a certificate signed by it (mutual TLS). ``tls_ca`` is what the member trusts
    #: when it calls the other members (default: ``tls_client_ca``, else the system's CAs).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tls_ca: Path | None = None
    #: Serve the API over plain HTTP (loopback addresses only).
    plain_http: bool = False
    #: The benchmark's baseline only: no token asked for (plain HTTP on loopback only).
    unsafe_no_auth: bool = False

    def validate(self) -> None:
        """Raise ConfigError for the first setting that is wrong."""
        if not valid_id(self.member_id):
            raise ConfigError("member_id", f"malformed member id {self.member_id!r}")
        for key in ("raft_address", "api_address"):
            if not valid_address(getattr(self, key)):
                raise ConfigError(key, f"expected host:port, got {getattr(self, key)!r}")
        ids = [p.id for p in self.peers]
        if self.member_id in ids or len(set(ids)) != len(ids):
            raise ConfigError("peer", "member ids must be distinct and not repeat this member's")
        for key, low, high in NUMBER_RANGES:
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
                raise ConfigError(key, f"must be a number from {low:g} to {high:g}, got {value!r}")
        if not self.election_timeout_min < self.election_timeout_max:
            raise ConfigError("election_timeout_min", "must be below election_timeout_max "
                              f"({self.election_timeout_max:g})")
        if not 2 <= self.log_compaction_min_entries <= 10_000_000:
            raise ConfigError("log_compaction_min_entries", "must be from 2 to 10000000")
        if not self.down_after > self.suspect_after:
            raise ConfigError("down_after", f"must be above suspect_after ({self.suspect_after:g})")
        if self.insecure:
            for key in ("raft_address", "api_address"):
                host = getattr(self, key).rsplit(":", 1)[0]
                if not is_loopback(host):
                    raise ConfigError("insecure", f"refused: {key} {host} is not a loopback address")
        elif self.secret_file is None:
            raise ConfigError("secret_file", "a cluster secret is required (or --insecure on loopback)")
        self._validate_tls()

    def _validate_tls(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert" if self.tls_cert is None else "tls_key",
                              "HTTPS needs both --tls-cert and --tls-key")
        if self.tls_cert is not None:
            if self.unsafe_no_auth:
                raise ConfigError("unsafe_no_auth", "only with --plain-http on a loopback address")
            if self.plain_http:
                raise ConfigError("plain_http", "give either --plain-http or --tls-cert, not both")
            for key in ("tls_cert", "tls_key", "tls_client_ca", "tls_ca"):
                path = getattr(self, key)
                if path is not None and not os.access(path, os.R_OK):
                    raise ConfigError(key, f"cannot read {path}")
            return
        if self.tls_client_ca is not None:
            raise ConfigError("tls_client_ca", "mutual TLS needs --tls-cert and --tls-key")
        if self.unsafe_no_auth and not self.plain_http:
            raise ConfigError("unsafe_no_auth", "only with --plain-http on a loopback address")
        host = self.api_address.rsplit(":", 1)[0]
        if not self.plain_http:
            raise ConfigError("tls_cert", "the API is served over HTTPS: give --tls-cert and "
                              "--tls-key (or --plain-http, on a loopback address only)")
        if not is_loopback(host):
            raise ConfigError("plain_http", f"refused: api_address {host} is not a loopback "
                              "address (serve HTTPS with --tls-cert and --tls-key)")

    def read_secret(self) -> str | None:
        """The cluster secret, or None when running insecure. Refuses a world-readable file."""
        if self.secret_file is None:
            return None
        text = read_private("secret_file", self.secret_file)
        if len(text) < 16:
            raise ConfigError("secret_file", "the secret must be at least 16 characters")
        return text

    def read_admin_token_hash(self) -> str | None:
        """The digest of the admin token file's token (None without a file). Refuses a file
        readable by others, or one that holds no well-formed token."""
        if self.admin_token_file is None:
            return None
        text = read_private("admin_token_file", self.admin_token_file)
        if not well_formed(text):
            raise ConfigError("admin_token_file", f"{self.admin_token_file} does not hold a "
                              "hacoord token (hc_ and 43 URL-safe characters; `hacoord token "
                              "generate FILE` writes one)")
        return token_hash(text)

    @property
    def api_url(self) -> str:
        scheme = "http" if self.tls_cert is None else "https"
        return self.advertise_api_url or f"{scheme}://{self.api_address}"

    def members(self) -> dict[str, MemberInfo]:
        me = MemberInfo(self.member_id, self.raft_address, self.api_url)
        return {me.id: me, **{p.id: p for p in self.peers}}


def read_private(key: str, path: Path) -> str:
    """The stripped text of a file only its owner may read (ConfigError on ``key`` otherwise)."""
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(key, f"{path} must not be readable by group or others (chmod 600)")
    return text


def _ensure_private(path: Path, make: Callable[[], str]) -> Path:
    """Write ``make()`` to a new file at ``path`` (mode 0600) unless the file exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
    return path


def ensure_admin_token(path: Path) -> Path:
    """Write a new admin token to ``path`` (mode 0600) unless the file exists."""
    return _ensure_private(path, new_token)


def ensure_secret(path: Path) -> Path:
    """Create a random cluster secret at ``path`` (mode 0600) unless one exists."""
    return _ensure_private(path, lambda: secrets.token_urlsafe(32))
