"""Test CA, SuperLink certificate and SuperNode keys: formats Flower accepts, a working TLS
handshake, owner-only private keys, and one error per bad input."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.supernode.register import try_load_public_key

from fedskip.deploy.certs import (
    LOCAL_HOSTS,
    certificate_hosts,
    generate_ca,
    generate_local_pki,
    generate_node_keys,
    generate_server_cert,
)
from fedskip.errors import ConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return generate_local_pki(tmp_path_factory.mktemp("pki"), ["site-0", "site-1"])


def test_layout_and_private_key_modes(pki) -> None:
    root = pki.ca.cert.parent
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "ca.key",
        "ca.pem",
        "nodes/site-0",
        "nodes/site-0.pub",
        "nodes/site-1",
        "nodes/site-1.pub",
        "server.key",
        "server.pem",
    ]
    for key in (pki.ca.key, pki.server.key, *(n.private_key for n in pki.nodes)):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_server_certificate_is_signed_by_ca_for_loopback_names(pki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert certificate_hosts(pki.server.cert) == ["localhost", "127.0.0.1", "::1"]
    assert LOCAL_HOSTS == ("localhost", "127.0.0.1", "::1")


def _handshake(cert: Path, key: Path, trust: Path, server_name: str) -> str:
    """TLS handshake over loopback; returns the negotiated protocol or raises SSLError."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(trust))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            return str(tls.version())
    finally:
        thread.join()
        listener.close()


def test_tls_handshake_verifies_against_the_ca(pki) -> None:
    assert _handshake(pki.server.cert, pki.server.key, pki.ca.cert, "localhost").startswith("TLS")


def test_tls_handshake_fails_with_another_ca(pki, tmp_path: Path) -> None:
    other = generate_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(pki.server.cert, pki.server.key, other.cert, "localhost")


def test_tls_handshake_fails_for_a_name_not_in_the_certificate(pki) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(pki.server.cert, pki.server.key, pki.ca.cert, "superlink.example.org")


def test_node_keys_are_openssh_ec_keys_flower_accepts(pki) -> None:
    node = pki.nodes[0]
    private = serialization.load_ssh_private_key(node.private_key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"
    public_text = node.public_key.read_text()
    assert public_text.startswith("ecdsa-sha2-nistp384 ") and public_text.endswith(" site-0\n")
    registered = try_load_public_key(node.public_key)  # what `flwr supernode register` sends
    expected = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert registered == expected
    assert pki.nodes[0].public_key.read_bytes() != pki.nodes[1].public_key.read_bytes()


def test_custom_hosts_become_dns_and_ip_sans(tmp_path: Path) -> None:
    ca = generate_ca(tmp_path)
    server = generate_server_cert(ca, tmp_path, hosts=("fl.hospital.example", "10.1.2.3"))
    assert certificate_hosts(server.cert) == ["fl.hospital.example", "10.1.2.3"]


def test_server_cert_needs_a_host(tmp_path: Path) -> None:
    ca = generate_ca(tmp_path)
    with pytest.raises(ConfigError, match="at least one host"):
        generate_server_cert(ca, tmp_path, hosts=())


@pytest.mark.parametrize("name", ["", "../x", ".hidden"])
def test_bad_node_key_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="node key name"):
        generate_node_keys(tmp_path, name)


def test_certificate_hosts_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certificate file not found"):
        certificate_hosts(tmp_path / "nope.pem")


def test_certificate_hosts_not_pem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello\n")
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        certificate_hosts(bad)
