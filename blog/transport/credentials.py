"""The internal service credential, both ends of it: short-lived JWTs, audience = the callee.

A token minted for the images service is refused by the payments service, and a leaked token
expires within minutes. Tokens are cached until shortly before they expire, and a verified one is
remembered until it expires, so neither end signs or checks a signature on the hot path.
"""

from __future__ import annotations

import threading
import time

import jwt

from blog.errors import Unauthorized

SERVICE_TOKEN_ISSUER = "strangler-blog-monolith"
SERVICE_UNAUTHORIZED = "service_unauthorized"


class ServiceUnauthorized(Unauthorized):
    code = SERVICE_UNAUTHORIZED


class ServiceCredentials:
    def __init__(self, secret: str, ttl_seconds: int = 300) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._verified: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token_for(self, audience: str) -> str:
        now = time.time()
        cached = self._cache.get(audience)
        if cached and cached[1] - now > 30:
            return cached[0]
        with self._lock:
            expires = now + self._ttl
            token = jwt.encode(
                {
                    "iss": SERVICE_TOKEN_ISSUER,
                    "aud": audience,
                    "iat": int(now),
                    "exp": int(expires),
                },
                self._secret,
                algorithm="HS256",
            )
            self._cache[audience] = (token, expires)
            return token

    def verify(self, authorization: str | None, audience: str) -> None:
        """Raise ServiceUnauthorized unless ``authorization`` carries a token for ``audience``.

        A token already verified is remembered until it expires: its signature cannot change,
        and checking it again would cost more (~70 µs) than the call it guards.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ServiceUnauthorized("a service credential is required")
        known = self._verified.get(token)
        if known is not None and known[0] == audience and known[1] > time.time():
            return
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=audience,
                issuer=SERVICE_TOKEN_ISSUER,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.InvalidTokenError as exc:
            raise ServiceUnauthorized(f"the service credential was refused: {exc}") from None
        if len(self._verified) >= 1024:
            self._verified.clear()
        self._verified[token] = (audience, float(claims["exp"]))
