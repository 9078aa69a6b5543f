"""The server's PKI: a CA made at first start, a serving certificate re-issued at every start (its SANs follow
the bind addresses), and an admin client certificate (system:masters). ECDSA P-256 keeps start-up fast."""

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

VALIDITY = datetime.timedelta(days=3650)


@dataclass
class Pki:
    ca_cert_pem: bytes
    ca_key_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes
    client_cert_pem: bytes
    client_key_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, ca: bool
) -> x509.CertificateBuilder:
    """What the CA and every leaf share: names, key, serial, validity, and the CA/leaf constraints."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def make_ca() -> tuple[bytes, bytes]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ironlb-ca")])
    cert = (
        _builder(name, name, key.public_key(), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def _issue(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[bytes, bytes]:
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), ca=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _cert_pem(cert), _key_pem(key)


def server_sans(addresses: list[str]) -> list[x509.GeneralName]:
    """DNS and IP SANs: localhost, the in-cluster names, 10.96.0.1 and every given address or name."""
    names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", "::1", "10.96.0.1"]
    for a in addresses:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            if a not in names:
                names.append(a)
        else:
            if a not in ips and a not in ("0.0.0.0", "::"):
                ips.append(a)
    out: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    out += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return out


def load_or_create(pki_dir: Path | None, addresses: list[str]) -> Pki:
    """CA and client certificate are kept in pki_dir (so kubeconfigs stay valid); the serving cert is new."""
    if pki_dir is not None and (pki_dir / "ca.crt").exists() and (pki_dir / "ca.key").exists():
        ca_cert, ca_key = (pki_dir / "ca.crt").read_bytes(), (pki_dir / "ca.key").read_bytes()
    else:
        ca_cert, ca_key = make_ca()
        if pki_dir is not None:
            _write(pki_dir / "ca.key", ca_key)
            _write(pki_dir / "ca.crt", ca_cert)
    if pki_dir is not None and (pki_dir / "admin.crt").exists() and (pki_dir / "admin.key").exists():
        client_cert, client_key = (pki_dir / "admin.crt").read_bytes(), (pki_dir / "admin.key").read_bytes()
    else:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-admin"),
            ]
        )
        client_cert, client_key = _issue(ca_cert, ca_key, subject, ExtendedKeyUsageOID.CLIENT_AUTH)
        if pki_dir is not None:
            _write(pki_dir / "admin.key", client_key)
            _write(pki_dir / "admin.crt", client_cert)
    server_cert, server_key = _issue(
        ca_cert,
        ca_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        server_sans(addresses),
    )
    return Pki(ca_cert, ca_key, server_cert, server_key, client_cert, client_key)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)
