"""The shape of an API token, which clients draw and members check: ``hc_`` and 43 URL-safe
characters (256 random bits)."""

import re
import secrets

TOKEN_PREFIX = "hc_"
TOKEN_PATTERN = re.compile(r"^hc_[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    """A fresh token: ``hc_`` and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
