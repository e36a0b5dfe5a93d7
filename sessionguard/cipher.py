"""`RecordCipher`: session data encrypted at rest, with AES-256-GCM.

With `cipher=RecordCipher([key])`, every record's payload (the session's data, its
creation time, a regenerate's forward pointer) is encrypted before the store sees it, so
a copy of the store or a backup holds nothing readable. The envelope around it keeps its
checksum and signature (`sessionguard.codec`): tools without the keys still tell damage
from intact records.

Keys rotate like `secret_key`: the first key encrypts, every key decrypts, and each
ciphertext names its key by a 4-byte id (a hash of the key, never the key). A record
encrypted with a key that is not configured is corrupt (`unknown_key`), never a crash.
A key is 32 random bytes (`RecordCipher.new_key()`), or a string of at least 32
characters from which one is derived.

Needs `pip install 'sessionguard[encryption]'` (the `cryptography` package).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence

from .errors import ConfigurationError, CorruptReason, CorruptSessionError
from .keymaterial import key_material

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "RecordCipher needs the cryptography package: pip install 'sessionguard[encryption]'"
    ) from exc

__all__ = ["RecordCipher"]

_ID_SIZE = 4
_NONCE_SIZE = 12  # GCM's standard nonce: random per record, 2^-32 collision bound at 2^32 writes
_KEY_PURPOSE = b"sessionguard.cipher.v1"


class RecordCipher:
    """Encrypts record payloads with the first of `keys`; decrypts with any of them."""

    #: Key id, nonce and GCM tag: how much longer a ciphertext is than its plaintext.
    overhead = _ID_SIZE + _NONCE_SIZE + 16

    def __init__(self, keys: Sequence[bytes | str] | bytes | str) -> None:
        given = [keys] if isinstance(keys, bytes | str) else list(keys)
        if not given:
            raise ConfigurationError("RecordCipher needs at least one key")
        derived = [key_material(k, purpose=_KEY_PURPOSE, owner="RecordCipher") for k in given]
        self._encrypting = (_id_of(derived[0]), AESGCM(derived[0]))
        self._by_id = {_id_of(key): AESGCM(key) for key in reversed(derived)}

    @staticmethod
    def new_key() -> bytes:
        """32 random bytes: a fresh key for `RecordCipher`."""
        return secrets.token_bytes(32)

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes:
        """Key id, nonce and ciphertext of `plaintext`, bound to `associated` (the
        envelope's header, so a payload cannot be moved under another header)."""
        key_id, aead = self._encrypting
        nonce = os.urandom(_NONCE_SIZE)
        return key_id + nonce + aead.encrypt(nonce, plaintext, associated)

    def decrypt(self, blob: bytes, associated: bytes) -> bytes:
        """The plaintext of `encrypt`'s output; `CorruptSessionError` if it was encrypted
        with a key this cipher does not have (`unknown_key`) or does not authenticate."""
        key_id, nonce = blob[:_ID_SIZE], blob[_ID_SIZE : _ID_SIZE + _NONCE_SIZE]
        aead = self._by_id.get(key_id)
        if aead is None or len(nonce) < _NONCE_SIZE:
            raise CorruptSessionError(
                CorruptReason.UNKNOWN_KEY,
                f"the record is encrypted with key {key_id.hex() or '-'}, which is not one of "
                "the cipher's keys (retired, or another deployment's)",
            )
        try:
            return aead.decrypt(nonce, blob[_ID_SIZE + _NONCE_SIZE :], associated)
        except InvalidTag:
            raise CorruptSessionError(
                CorruptReason.BAD_SIGNATURE,
                "the record's ciphertext does not authenticate under its key (altered)",
            ) from None

    def __repr__(self) -> str:
        return f"RecordCipher(keys={len(self._by_id)})"  # never the keys


def _id_of(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=_ID_SIZE, person=b"sg-key-id").digest()
