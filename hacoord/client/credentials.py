"""Which API token a client sends, and which certificate authority it trusts.

In order: the token passed in, the file passed in, ``HACOORD_TOKEN``, the file named by
``HACOORD_TOKEN_FILE``, and, when every endpoint is on this host, the admin token of the local
cluster (``.hacoord/admin.token``, or under ``HACOORD_DATA_DIR``), so that the commands of the
README's tour need no setting. Besides the endpoints configured, a token goes only to members the
cluster names (leader hints, the members its answers list) and, of those, the client learns only
URLs of the configured endpoints' scheme (no plain HTTP for a client configured with HTTPS), and
only ones on this host when every configured endpoint is (:func:`learnable`).

HTTPS members are verified against the CA file passed in, ``HACOORD_CA``, the local cluster's CA
(``.hacoord/ca.pem``) when every endpoint is on this host, or the system's CAs. A client
certificate for mutual TLS comes from the pair passed in or ``HACOORD_CERT`` / ``HACOORD_KEY``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from hacoord.protocol.local import ADMIN_TOKEN_FILE, CA_FILE, DATA_DIR_ENV, LOCAL_DATA_DIR

CA_ENV = "HACOORD_CA"
CERT_ENV = "HACOORD_CERT"
KEY_ENV = "HACOORD_KEY"
TOKEN_ENV = "HACOORD_TOKEN"
TOKEN_FILE_ENV = "HACOORD_TOKEN_FILE"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class TokenFileError(ValueError):
    """A token file that cannot be used (unreadable or empty)."""


class TlsFileError(ValueError):
    """A CA or client certificate file that cannot be loaded."""


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace removed). Raises :class:`TokenFileError`
    naming the file when it cannot be read or is empty."""
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read token file {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise TokenFileError(f"token file {path} is empty")
    return text


def local_file(name: str) -> Path:
    """Where the local cluster keeps ``name`` (its admin token, its CA)."""
    return Path(os.environ.get(DATA_DIR_ENV) or LOCAL_DATA_DIR) / name


def _local(endpoints: Iterable[str]) -> bool:
    return all(urlsplit(url).hostname in LOOPBACK_HOSTS for url in endpoints)


def learnable(configured: Iterable[str]) -> Callable[[str], bool]:
    """Which member URLs a client configured with ``configured`` may add to its endpoints (see
    the module docstring)."""
    configured = list(configured)
    schemes = {urlsplit(url).scheme for url in configured}
    local = _local(configured)
    return lambda url: urlsplit(url).scheme in schemes and (not local or _local([url]))


def resolve_token(endpoints: Iterable[str], token: str | None = None,
                  token_file: str | Path | None = None) -> str | None:
    """The token to send to ``endpoints`` (see the module docstring), or None."""
    if token:
        return token.strip()
    if token_file:
        return read_token_file(token_file)
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV, "").strip():
        return read_token_file(os.environ[TOKEN_FILE_ENV].strip())
    local = local_file(ADMIN_TOKEN_FILE)
    if _local(endpoints) and local.is_file():
        try:
            return read_token_file(local)
        except TokenFileError:
            return None
    return None


def tls_context(endpoints: Iterable[str], ca: str | Path | None = None,
                cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """How to verify HTTPS members (and, with ``cert``, show a client certificate); see the
    module docstring. Raises :class:`TlsFileError` for a CA or certificate file that cannot
    be loaded."""
    ca = ca or os.environ.get(CA_ENV, "").strip() or None
    if ca is None and _local(endpoints) and local_file(CA_FILE).is_file():
        ca = local_file(CA_FILE)
    if cert is None and os.environ.get(CERT_ENV) and os.environ.get(KEY_ENV):
        cert = (os.environ[CERT_ENV], os.environ[KEY_ENV])
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        if cert is not None:
            context.load_cert_chain(cert[0], cert[1])
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError(f"cannot load the CA or client certificate: {exc}") from None
    return context
