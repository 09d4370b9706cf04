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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacoord.core.model import valid_address, valid_id
from hacoord.replication.base import MemberInfo

DEFAULT_BASE_PORT = 7400
DEFAULT_DATA_DIR = ".hacoord"
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
                            f"http://{host}:{api_port(base_port, k)}")
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

    def read_secret(self) -> str | None:
        """The cluster secret, or None when running insecure. Refuses a world-readable file."""
        if self.secret_file is None:
            return None
        try:
            mode = os.stat(self.secret_file).st_mode
            text = Path(self.secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError("secret_file", f"cannot read {self.secret_file}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError("secret_file", f"{self.secret_file} must not be readable by group or "
                                             "others (chmod 600)")
        if len(text) < 16:
            raise ConfigError("secret_file", "the secret must be at least 16 characters")
        return text

    @property
    def api_url(self) -> str:
        return self.advertise_api_url or f"http://{self.api_address}"

    def members(self) -> dict[str, MemberInfo]:
        me = MemberInfo(self.member_id, self.raft_address, self.api_url)
        return {me.id: me, **{p.id: p for p in self.peers}}


def ensure_secret(path: Path) -> Path:
    """Create a random cluster secret at ``path`` (mode 0600) unless one exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path
