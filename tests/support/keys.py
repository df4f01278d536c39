"""Private keys for the assertion tests, made once per process (an RSA key takes tens of milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


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
