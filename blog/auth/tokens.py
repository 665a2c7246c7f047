"""Access tokens: HS256 JWTs with ``sub`` (the user id as a string), ``iat``, ``exp`` and ``iss``.

Decoding pins the algorithm (a token cannot pick ``none`` or another algorithm), requires every
claim, checks the issuer and the expiry, and turns every failure into ``InvalidToken``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import jwt

from blog.auth import InvalidToken
from blog.config import AuthConfig
from blog.errors import MAX_STORED_ID

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "iat", "exp", "iss"]
MAX_TOKEN_LENGTH = 4096
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")


def issue_token(user_id: int, config: AuthConfig, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": issued,
        "exp": issued + timedelta(seconds=config.jwt_ttl_seconds),
        "iss": config.jwt_issuer,
    }
    return jwt.encode(claims, config.jwt_secret, algorithm=ALGORITHM)


class DecodedToken(NamedTuple):
    user_id: int
    expires_at: float
    """The ``exp`` claim, in seconds since the epoch."""


def decode_token(token: object, config: AuthConfig) -> DecodedToken:
    """The user a valid token was issued for, and when it expires; ``InvalidToken`` for
    anything else."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("the token is missing or malformed")
    try:
        claims = jwt.decode(
            token,
            config.jwt_secret,
            algorithms=[ALGORITHM],
            issuer=config.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("the token is invalid") from None
    subject = claims["sub"]
    # A user id no row can have is as invalid as a malformed one (and must reach no query).
    if not _USER_ID.fullmatch(subject) or int(subject) > MAX_STORED_ID:
        raise InvalidToken("the token is invalid")
    return DecodedToken(int(subject), float(claims["exp"]))
