"""Throwaway certificates for the TLS tests: a CA, a server certificate for 127.0.0.1 and localhost,
client certificates, and a second ("rogue") CA whose certificates the services must refuse.

Generated once per test session (``certs`` fixture in ``tests/conftest.py``) with EC P-256 keys,
which take milliseconds, so TLS costs the default run nothing noticeable.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = ("localhost",)
LOCAL_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    """Every file the TLS tests use; ``server`` is also a client certificate (both usages), like a
    service's own identity that the orchestrator presents to the stages."""

    ca: Path
    server: KeyPair
    client: KeyPair
    rogue_ca: Path
    rogue_client: KeyPair
    rogue_server: KeyPair
    # A key of the right kind that belongs to no certificate here: a mismatched pair.
    stray_key: Path
    # Names the server certificate carries, besides the local ones.
    server_names: tuple[str, ...] = ("orchestrator", "swarm.test")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))


class _Authority:
    def __init__(self, common_name: str) -> None:
        self.key = _key()
        self.name = _name(common_name)
        builder = (
            _validity(x509.CertificateBuilder())
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
        )  # fmt: skip
        self.cert = builder.sign(self.key, hashes.SHA256())

    def issue(
        self, directory: Path, stem: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), server: bool
    ) -> KeyPair:
        key = _key()
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH, *([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])]
        builder = (
            _validity(x509.CertificateBuilder())
            .subject_name(_name(stem))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(_write_cert(directory / f"{stem}.crt", cert), _write_key(directory / f"{stem}.key", key))


def generate(directory: Path) -> Certs:
    """Write a fresh set of certificates into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = _Authority("swarm test CA")
    rogue = _Authority("rogue CA")
    server_names = ("orchestrator", "swarm.test")
    return Certs(
        ca=_write_cert(directory / "ca.crt", authority.cert),
        server=authority.issue(directory, "server", dns=(*LOCAL_NAMES, *server_names), ips=LOCAL_IPS, server=True),
        client=authority.issue(directory, "client", server=False),
        rogue_ca=_write_cert(directory / "rogue-ca.crt", rogue.cert),
        rogue_client=rogue.issue(directory, "rogue-client", server=False),
        rogue_server=rogue.issue(directory, "rogue-server", dns=LOCAL_NAMES, ips=LOCAL_IPS, server=True),
        stray_key=_write_key(directory / "stray.key", _key()),
        server_names=server_names,
    )
