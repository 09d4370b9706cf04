"""A local certificate authority for a cluster's HTTPS API (``hacoord cluster up``, the testing
kit): one CA, and for each member a certificate for its addresses, good for serving and, under
mutual TLS, for the member's own calls to the others.

Keys are ECDSA P-256; files are PEM, keys mode 0600. Existing files are kept, so a cluster
restarted with the same data directory keeps its CA, and clients that trust it keep working.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hacoord.protocol.local import CA_FILE

CA_CERT = CA_FILE
CA_KEY = "ca.key"
MEMBER_CERT = "tls.pem"
MEMBER_KEY = "tls.key"
VALID_DAYS = 3650


@dataclass(frozen=True)
class MemberTls:
    """The files one member serves HTTPS with, and the CA it trusts."""

    cert: Path
    key: Path
    ca: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=VALID_DAYS))


def ensure_ca(directory: Path, name: str = "hacoord local CA") -> tuple[Path, Path]:
    """The CA certificate and key in ``directory`` (made if absent)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = _validity(x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(key.public_key()).serial_number(x509.random_serial_number())) \
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True) \
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True) \
        .sign(key, hashes.SHA256())
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def issue(ca: tuple[Path, Path], directory: Path, common_name: str, hosts: list[str],
          client: bool = True) -> tuple[Path, Path]:
    """A certificate for ``hosts`` (IP addresses or DNS names) signed by ``ca``, written to
    ``directory`` as ``tls.pem`` and ``tls.key`` (kept if both exist). ``client``: also good
    for TLS client authentication."""
    cert_path, key_path = directory / MEMBER_CERT, directory / MEMBER_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    ca_cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
    ca_key = serialization.load_pem_private_key(ca[1].read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _validity(x509.CertificateBuilder()
                     .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                     .issuer_name(ca_cert.subject).public_key(key.public_key())
                     .serial_number(x509.random_serial_number())) \
        .add_extension(x509.SubjectAlternativeName(names), critical=False) \
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True) \
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False) \
        .sign(ca_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def member_tls(root: Path, member_id: str, host: str, cert_dir: Path | None = None) -> MemberTls:
    """The CA under ``root`` and ``member_id``'s certificate for ``host`` (and the loopback
    names) under ``cert_dir`` (default ``root/member_id``), made where absent."""
    ca = ensure_ca(root)
    hosts = [host, "127.0.0.1", "localhost", "::1"]
    cert, key = issue(ca, cert_dir or root / member_id, member_id, hosts)
    return MemberTls(cert, key, ca[0])
