"""Envelope encryption and secrets.

Owns: the master-key source (a 0600 key file by default; the `MasterKeySource` protocol is the seam for a KMS),
per-subject data keys wrapped by the master key, AES-256-GCM sealing of content with associated data that binds
each ciphertext to its session and kind, and the `Secret` type whose repr never shows its value.
Knows nothing of SQL or HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
_KEY_FILE_PREFIX = "ringfence-master-key-v1:"


class CryptoError(Exception):
    """A key or ciphertext problem; the message says which, never shows key material."""


class MasterKeyError(CryptoError):
    """The master key is missing, unreadable, too open, malformed, or not the one the data was written with."""


class CorruptCiphertext(CryptoError):
    """A ciphertext failed authentication: it was corrupted or tampered with."""


class Secret:
    """A secret value whose repr and str are redacted; call `reveal()` at the single place it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))


class MasterKeySource(Protocol):
    """Wraps and unwraps data keys. A KMS-backed source implements the same three members."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...

    def derive(self, purpose: str) -> bytes: ...


class LocalMasterKey:
    """A master key held in this process (read from the key file). Wrapping is AES-256-GCM bound to a context."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._key = key
        # The id is a hash of a derived value, so it identifies the key without revealing anything usable.
        self._id = hashlib.sha256(b"ringfence key id\x00" + key).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except InvalidTag:
            raise MasterKeyError(
                "a data key could not be unwrapped: the master key is not the one it was wrapped with, "
                "or the wrapped key was altered"
            ) from None

    def derive(self, purpose: str) -> bytes:
        return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=b"ringfence:" + purpose.encode()).derive(self._key)

    def __repr__(self) -> str:
        return f"LocalMasterKey(id={self._id})"


def create_key_file(path: Path) -> LocalMasterKey:
    """Create a new master key file with mode 0600; refuses to overwrite an existing file."""
    key = os.urandom(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"master key file {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(_KEY_FILE_PREFIX + base64.b64encode(key).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return LocalMasterKey(key)


def read_key_file(path: Path) -> LocalMasterKey:
    """Read the master key file, refusing one that others can read or that is malformed."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MasterKeyError(f"master key file {path} does not exist") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"master key file {path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "run: chmod 600 " + str(path)
        )
    text = path.read_text(errors="replace").strip()
    if not text.startswith(_KEY_FILE_PREFIX):
        raise MasterKeyError(f"master key file {path} is not a ringfence master key (bad header)")
    try:
        key = base64.b64decode(text[len(_KEY_FILE_PREFIX) :], validate=True)
    except ValueError:
        raise MasterKeyError(f"master key file {path} is malformed (bad base64)") from None
    return LocalMasterKey(key)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(data_key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """Encrypt with AES-256-GCM; returns (nonce, ciphertext-with-tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(data_key).encrypt(nonce, plaintext, aad)


def unseal(data_key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise CorruptCiphertext(f"{what} failed authentication: it was corrupted or tampered with") from None
