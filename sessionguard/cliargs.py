"""What the `sessionguard` commands take from their options and the environment: the
app's secret keys, its cipher keys and its id key."""

from __future__ import annotations

import argparse
import os

from .codec import Cipher, record_keys
from .hashedids import HashedIds

__all__ = ["cipher_of", "hashed_ids_of", "record_keys_of", "secrets_of"]


def secrets_of(args: argparse.Namespace) -> list[str]:
    """`--secret-key` (repeated), or SESSIONGUARD_SECRET_KEY, or nothing."""
    return args.secret_key or _from_environment("SESSIONGUARD_SECRET_KEY")


def record_keys_of(args: argparse.Namespace) -> list[bytes] | None:
    """Record keys from the secret keys, or `None` if none was given."""
    secrets = secrets_of(args)
    return record_keys([secret.encode() for secret in secrets]) if secrets else None


def cipher_of(args: argparse.Namespace) -> Cipher | None:
    """A `RecordCipher` from `--cipher-key` (or SESSIONGUARD_CIPHER_KEY), or `None`."""
    keys = args.cipher_key or _from_environment("SESSIONGUARD_CIPHER_KEY")
    if not keys:
        return None
    from .cipher import RecordCipher  # needs the encryption extra: only when asked for

    return RecordCipher(keys)


def hashed_ids_of(args: argparse.Namespace) -> HashedIds | None:
    """`HashedIds` from `--id-key` (or SESSIONGUARD_ID_KEY), or `None`."""
    keys = [args.id_key] if args.id_key else _from_environment("SESSIONGUARD_ID_KEY")
    return HashedIds(keys[0]) if keys else None


def _from_environment(name: str) -> list[str]:
    value = os.environ.get(name)
    return [value] if value else []
