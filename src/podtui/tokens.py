"""Tokens: creation, hashing, constant-time checks and masking. Only SHA-256 hashes are ever stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_MASKS = [
    (re.compile(r"(?i)(token=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"(?i)(api[_-]?key[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9._-]{8,}"), r"\1***"),
]


def new_token() -> str:
    """32 random bytes, URL-safe (43 characters of A-Z a-z 0-9 - _)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented token with a stored hash in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def mask_secrets(text: str) -> str:
    """Replace token query values, Bearer credentials and API keys with ***."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text
