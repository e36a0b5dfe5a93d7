"""What the `sessionguard` commands take from their options and the environment: the
app's secret keys and its cipher keys."""

from __future__ import annotations

import argparse
import os

from .codec import Cipher, record_keys

__all__ = ["cipher_of", "record_keys_of", "secrets_of"]


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


def _from_environment(name: str) -> list[str]:
    value = os.environ.get(name)
    return [value] if value else []
