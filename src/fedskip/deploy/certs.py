"""Test certificates and SuperNode key pairs for local trials of a Flower deployment.

Two separate trust mechanisms protect a Flower deployment:

* **TLS** encrypts every connection to the SuperLink and lets SuperNodes (and the ``flwr`` CLI)
  verify that they talk to the real coordinator: the SuperLink presents a server certificate
  signed by a CA that every site trusts (``--root-certificates``).
* **SuperNode authentication** lets only registered sites join: each site holds an EC private
  key (OpenSSH format, NIST curve), the coordinator registers the matching public key with
  ``flwr supernode register``, and the SuperLink refuses any SuperNode whose key is unknown.

This module creates a throw-away CA, a server certificate for a list of host names / IP addresses
(subject alternative names) and per-site key pairs with the ``cryptography`` package. It is
meant for loopback trials and tests; a hospital deployment uses certificates from its own PKI
(see ``docs/deployment.md``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedskip.errors import ConfigError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Subject alternative names of the server certificate for a loopback deployment."""

_KEY_CURVE = ec.SECP384R1()
"""P-384, the curve Flower's documentation uses for SuperNode keys (any NIST curve works)."""


@dataclass(frozen=True)
class CertificateFiles:
    """PEM files of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class NodeKeys:
    """One site's SuperNode authentication key pair (OpenSSH format)."""

    name: str
    private_key: Path
    public_key: Path


@dataclass(frozen=True)
class LocalPki:
    """Everything :func:`generate_local_pki` writes: CA, SuperLink certificate, site keys."""

    ca: CertificateFiles
    server: CertificateFiles
    nodes: tuple[NodeKeys, ...]


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by the owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san_entries(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return entries


def generate_ca(
    out_dir: str | Path, *, common_name: str = "fedskip test CA", days: int = 30
) -> CertificateFiles:
    """Create a self-signed CA (``ca.pem``, ``ca.key``) valid for ``days`` days."""
    out = Path(out_dir)
    key = ec.generate_private_key(_KEY_CURVE)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(cert=out / "ca.pem", key=out / "ca.key")
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key, _pem_key(key))
    return files


def generate_server_cert(
    ca: CertificateFiles,
    out_dir: str | Path,
    *,
    hosts: tuple[str, ...] = LOCAL_HOSTS,
    days: int = 30,
    name: str = "server",
) -> CertificateFiles:
    """Create ``<name>.pem``/``<name>.key`` signed by ``ca`` for ``hosts`` (DNS names or IPs).

    Clients check the address they dial against the certificate's subject alternative names, so
    ``hosts`` must contain every name or IP address SuperNodes and ``flwr`` use to reach the
    SuperLink.
    """
    if not hosts:
        raise ConfigError("server certificate: at least one host name or IP address is required")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca.key}: the CA key must be an EC private key")
    key = ec.generate_private_key(_KEY_CURVE)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san_entries(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = Path(out_dir)
    files = CertificateFiles(cert=out / f"{name}.pem", key=out / f"{name}.key")
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key, _pem_key(key))
    return files


def generate_node_keys(out_dir: str | Path, name: str) -> NodeKeys:
    """Create one site's SuperNode key pair: ``<name>`` (private) and ``<name>.pub`` (OpenSSH).

    The private key never leaves the site; only ``<name>.pub`` is given to the coordinator, who
    registers it with ``flwr supernode register``.
    """
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"node key name {name!r}: use letters, digits, '-' or '_'")
    key = ec.generate_private_key(_KEY_CURVE)
    out = Path(out_dir)
    keys = NodeKeys(name=name, private_key=out / name, public_key=out / f"{name}.pub")
    _write_private(
        keys.private_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write_public(keys.public_key, public + f" {name}\n".encode())
    return keys


def generate_local_pki(
    out_dir: str | Path, sites: list[str], *, hosts: tuple[str, ...] = LOCAL_HOSTS, days: int = 30
) -> LocalPki:
    """CA, SuperLink certificate for ``hosts`` and one key pair per site, under ``out_dir``.

    Layout: ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``, ``nodes/<site>[.pub]``.
    """
    out = Path(out_dir)
    ca = generate_ca(out, days=days)
    server = generate_server_cert(ca, out, hosts=hosts, days=days)
    nodes = tuple(generate_node_keys(out / "nodes", site) for site in sites)
    return LocalPki(ca=ca, server=server, nodes=nodes)


def certificate_hosts(cert_path: str | Path) -> list[str]:
    """The DNS names and IP addresses a PEM certificate is valid for (its SANs)."""
    path = Path(cert_path)
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: certificate file not found") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM certificate") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    ]
