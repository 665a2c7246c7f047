"""The socket transport: one keep-alive connection pool per service.

urllib3's pool used directly: ``requests``' per-call machinery (hooks, cookies, header merging)
costs more than the loopback round trip itself, and a new TCP connection per call would cost a
handshake more. No retries and no redirects here: retrying is the resilience layer's decision,
which knows whether the request is safe to repeat.
"""

from __future__ import annotations

from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from blog.transport import (
    ConnectFailed,
    ConnectionBroken,
    TimedOut,
    TransportError,
    WireRequest,
    WireResponse,
    lower_headers,
)

_BODY_REFUSED = (401, 413)


class PooledHttpTransport:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pool = urllib3.connection_from_url(
            self.base_url, maxsize=pool_size, block=False, retries=False, timeout=self._timeout
        )

    def send(self, request: WireRequest) -> WireResponse:
        timeout = self._timeout
        if request.read_timeout is not None:
            timeout = urllib3.Timeout(connect=self._connect_timeout, read=request.read_timeout)
        try:
            response = self._pool.urlopen(
                request.method,
                request.path,
                body=request.body,
                headers=dict(request.headers),
                preload_content=False,
                redirect=False,
                retries=False,
                timeout=timeout,
            )
        except NewConnectionError as exc:
            raise ConnectFailed(f"could not connect ({_root_cause(exc)})") from None
        except ConnectTimeoutError:
            raise ConnectFailed("could not connect (timed out)") from None
        except Urllib3Timeout as exc:
            raise TimedOut(f"timed out ({type(exc).__name__})") from None
        except ProtocolError as exc:
            raise ConnectionBroken(f"connection broken ({_root_cause(exc)})") from None
        except HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        connection = response.connection  # reading the body in full hands it back to the pool
        try:
            content = response.read()
        except (Urllib3Timeout, ProtocolError) as exc:
            raise ConnectionBroken(f"response broken off ({type(exc).__name__})") from None
        finally:
            response.release_conn()
            if request.body is not None and response.status in _BODY_REFUSED and connection:
                # A server that refuses a body unread (401 before reading it, 413) closes the
                # connection after answering, though its answer says keep-alive: drop the
                # socket so that the pool opens a fresh one next time.
                connection.close()
        return WireResponse(response.status, lower_headers(response.headers), content)

    def describe(self) -> dict[str, Any]:
        return {"url": self.base_url}

    def close(self) -> None:
        self._pool.close()


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__
