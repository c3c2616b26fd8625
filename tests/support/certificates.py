"""Self-signed TLS certificates for the tests: a P-256 key and a certificate that is its own CA, so a
client trusts it as its root."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    private_key: Path
    ca_pem: bytes  # the certificate itself, to trust on the client side


def self_signed(
    directory: Path,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    common_name: str = "localhost",
    stem: str = "server",
) -> TlsFiles:
    """A certificate for the names `dns` and addresses `ips`, valid from five minutes ago for an hour,
    written with its key to `directory` as `<stem>.crt` and `<stem>.key`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    certificate_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    certificate_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TlsFiles(certificate_path, key_path, pem)


def loopback_certificate(
    directory: Path, *, common_name: str = "localhost", dns: tuple[str, ...] = ("localhost",)
) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and by default `localhost`): a server on loopback. Its paths."""
    files = self_signed(directory, dns=dns, ips=("127.0.0.1",), common_name=common_name)
    return files.certificate, files.private_key
