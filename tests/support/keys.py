"""Private keys for the assertion tests, made once per process (an RSA key takes tens of milliseconds)."""

from __future__ import annotations

import base64
import datetime
import math
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str

    @property
    def body(self) -> str:
        """The base64 between the PEM armour lines: what a leak of the key would most likely show."""
        return "".join(line for line in self.private_pem.splitlines() if not line.startswith("-----"))


def _pair(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> KeyPair:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private, public)


@cache
def rsa_key(number: int = 0, bits: int = 2048) -> KeyPair:
    """A distinct RSA key per ``number``."""
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=bits))


@cache
def ec_key(number: int = 0) -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP256R1()))


def ed25519_key() -> KeyPair:
    return _pair(ed25519.Ed25519PrivateKey.generate())


def p384_key() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP384R1()))


def encrypted_pem(pair: KeyPair, password: bytes = b"hunter2-hunter2") -> str:
    key = serialization.load_pem_private_key(pair.private_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    ).decode()


def certificate_chain(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for ``name`` signed by it: (ca.pem, leaf.pem, leaf.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "connvault test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, leaf_path, key_path = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, leaf_path, key_path


def rsa_pem(*, n: int, e: int, d: int, p: int, q: int) -> str:
    """A traditional RSA PEM of exactly these numbers (the CRT values derived from them), whatever they are: keys
    no generator makes, as a hostile tenant hands them over."""
    fields = (0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p) if math.gcd(q, p) == 1 else 1)
    body = b"".join(_der_integer(value) for value in fields)
    der = b"\x30" + _der_length(len(body)) + body
    lines = textwrap.wrap(base64.b64encode(der).decode(), 64)
    return "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *lines, "-----END RSA PRIVATE KEY-----", ""])


def _der_integer(value: int) -> bytes:
    data = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return b"\x02" + _der_length(len(data)) + data


def _der_length(length: int) -> bytes:
    if length < 128:
        return bytes([length])
    data = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(data)]) + data
