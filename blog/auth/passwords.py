"""Password hashing: bcrypt over an HMAC-SHA256 pre-hash ("bcrypt-sha256").

bcrypt only reads the first 72 bytes of its input (bcrypt 5 raises on longer input instead of
truncating). Truncating would let two passwords that share their first 72 bytes, which is only
18 four-byte UTF-8 characters, match each other. So, like passlib's ``bcrypt_sha256`` (v2) and
Django's ``BCryptSHA256PasswordHasher``, the password is first condensed with HMAC-SHA256 and
base64-encoded (44 ASCII bytes, never a NUL byte), and that is what bcrypt hashes: every byte of
the password counts.

The HMAC is keyed with the bcrypt salt (as passlib does) rather than being a plain SHA-256, so a
leaked table of unsalted SHA-256 password hashes cannot be replayed against ours ("password
shucking"). Passwords are NFKC-normalised first, so the same text typed on systems that compose
accents differently still matches (NIST SP 800-63B 5.1.1.2).

Stored format: ``bcrypt-sha256$<bcrypt hash>``; the prefix leaves room for a later scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata

import bcrypt

SCHEME = "bcrypt-sha256$"
MIN_LENGTH = 8
MAX_LENGTH = 1024
"""Characters. A cap keeps one request from making the server hash megabytes (DoS)."""

_SALT_LENGTH = 29  # "$2b$12$" + 22 characters of salt


def _prehash(password: str, salt: bytes) -> bytes:
    normalised = unicodedata.normalize("NFKC", password).encode("utf-8")
    digest = hmac.new(salt, normalised, hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str, rounds: int) -> str:
    """Hash ``password`` (a valid, length-checked ``str``) with bcrypt at ``rounds``."""
    salt = bcrypt.gensalt(rounds)
    return SCHEME + bcrypt.hashpw(_prehash(password, salt), salt).decode("ascii")


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for a malformed or foreign hash."""
    if not stored.startswith(SCHEME):
        return False
    hashed = stored[len(SCHEME) :].encode("ascii", "replace")
    try:
        return bcrypt.checkpw(_prehash(password, hashed[:_SALT_LENGTH]), hashed)
    except (ValueError, UnicodeError):
        return False
