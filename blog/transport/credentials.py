"""The internal service credential, both ends of it: short-lived JWTs, audience = the callee.

A token minted for the images service is refused by the payments service, and a leaked token
expires within minutes. Tokens are cached until shortly before they expire, and a verified one is
remembered until it expires, so neither end signs or checks a signature on the hot path.

Each audience has its own secret (``BLOG_INTERNAL_TOKEN_<DOMAIN>``, see
``blog.config.Config.internal_token``): the monolith holds every service's, each service only its
own. A service can therefore mint tokens for itself alone, so whoever takes over the images
service (it decodes hostile files) cannot call auth or payments with what it finds there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

import jwt

from blog.errors import Unauthorized
from blog.verified import VerifiedTokens

log = logging.getLogger(__name__)

SERVICE_TOKEN_ISSUER = "strangler-blog-monolith"
SERVICE_UNAUTHORIZED = "service_unauthorized"
MONOLITH_AUDIENCE = "monolith"
"""The audience of a token for the monolith itself (``/api/health``'s details), signed with the
shared ``BLOG_INTERNAL_TOKEN``, which no service needs in production."""
REFUSED = "the service credential was refused"


class ServiceUnauthorized(Unauthorized):
    code = SERVICE_UNAUTHORIZED


class ServiceCredentials:
    """Mints and checks service tokens with ``secrets``: audience → its secret. One string is
    one secret for every audience (a test, a tool that talks to one service)."""

    def __init__(self, secrets: Mapping[str, str] | str, ttl_seconds: int = 300) -> None:
        self._secrets: Mapping[str, str] | None = None if isinstance(secrets, str) else secrets
        self._shared = secrets if isinstance(secrets, str) else None
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._verified: VerifiedTokens[str] = VerifiedTokens()
        self._lock = threading.Lock()

    def audiences(self) -> list[str] | None:
        """The audiences these credentials hold a secret for (None: any)."""
        return None if self._secrets is None else sorted(self._secrets)

    def _secret(self, audience: str) -> str:
        """``audience``'s secret; KeyError when it is not held here."""
        if self._secrets is None:
            assert self._shared is not None
            return self._shared
        return self._secrets[audience]

    def token_for(self, audience: str) -> str:
        now = time.time()
        cached = self._cache.get(audience)
        if cached and cached[1] - now > 30:
            return cached[0]
        secret = self._secret(audience)
        with self._lock:
            expires = now + self._ttl
            token = jwt.encode(
                {
                    "iss": SERVICE_TOKEN_ISSUER,
                    "aud": audience,
                    "iat": int(now),
                    "exp": int(expires),
                },
                secret,
                algorithm="HS256",
            )
            self._cache[audience] = (token, expires)
            return token

    def verify(self, authorization: str | None, audience: str) -> None:
        """Raise ServiceUnauthorized unless ``authorization`` carries a token for ``audience``.

        A token already verified is remembered until it expires: its signature cannot change,
        and checking it again would cost more (~70 µs) than the call it guards. Why a token was
        refused is logged here and never told to the caller: the JWT library's reason ("Signature
        verification failed", "Invalid audience") would teach someone forging tokens which part
        they got right.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ServiceUnauthorized("a service credential is required")
        if self._verified.get(token) == audience:
            return
        try:
            claims = jwt.decode(
                token,
                self._secret(audience),
                algorithms=["HS256"],
                audience=audience,
                issuer=SERVICE_TOKEN_ISSUER,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except KeyError:
            log.warning("service credential for %s refused: no secret held for it", audience)
            raise ServiceUnauthorized(REFUSED) from None
        except jwt.InvalidTokenError as exc:
            log.warning("service credential for %s refused: %s", audience, exc)
            raise ServiceUnauthorized(REFUSED) from None
        self._verified.remember(token, audience, float(claims["exp"]))

    def accepts(self, authorization: str | None, audience: str) -> bool:
        """Whether ``authorization`` carries a valid token for ``audience`` (never raises)."""
        try:
            self.verify(authorization, audience)
        except ServiceUnauthorized:
            return False
        return True
