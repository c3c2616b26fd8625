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
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


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


# ---- C10: a CA and the client certificates it issues (SPIFFE X509-SVIDs, subject names) ----

_PEM = serialization.Encoding.PEM


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class Issued:
    """A certificate with its key, as PEM, and where it was written (if it was)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(_PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """`<stem>.crt` and `<stem>.key` in `directory`: their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        certificate_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        certificate_path.write_bytes(self.pem)
        key_path.write_bytes(self.key_pem)
        return certificate_path, key_path


def _name(common_name: str, organization: str = "") -> x509.Name:
    """`/O=.../CN=...`, the usual order: RFC 4514 writes it most specific first, `CN=...,O=...`."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate_authority(common_name: str = "Watchword test CA", *, issuer: Issued | None = None) -> Issued:
    """A CA valid from an hour ago for a day: a root, or an intermediate when `issuer` is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def client_certificate(
    authority: Issued,
    *,
    spiffe_id: str = "",
    uris: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    common_name: str = "workload",
    organization: str = "",
    valid_from: datetime.timedelta = datetime.timedelta(minutes=-5),
    valid_for: datetime.timedelta = datetime.timedelta(hours=1),
    usages: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
) -> Issued:
    """A client certificate issued by `authority`: an X509-SVID when `spiffe_id` is given (its one URI
    SAN), else known by its subject. Valid from now + `valid_from` for `valid_for`; `usages` None: no EKU."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.now(datetime.UTC) + valid_from
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in (spiffe_id, *uris) if u]
    names += [x509.DNSName(name) for name in dns]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return Issued(builder.sign(authority.key, hashes.SHA256()), key)
