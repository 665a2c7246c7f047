"""The extracted hops the matrix measures: each a call of a domain's interface, made in-process
and over HTTP, and the same request on the wire, sent with ``http.client``.

Every call here is judged against 3 × F0 (issue 9), and the post page's limit is priced with the
hops measured here for the calls its Server-Timing lists: when the gateway starts calling a domain
method not listed here, add it. A call whose method the domain's interface no longer has is
skipped (and the report lists only what was measured).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blog.wiring import Domains

Fixture = dict[str, Any]
"""What ``_seed_domains`` made in each monolith: user_id, token, post_id, image_key,
payment_id."""

# name, domain, interface call, wire request (method, path, json body, authenticated)
HOPS: list[
    tuple[
        str,
        str,
        Callable[[Domains, Fixture], Any],
        Callable[[Fixture], tuple[str, str, Any, bool]],
    ]
] = [
    (
        "auth.get_user",
        "auth",
        lambda d, f: d.auth.get_user(f["user_id"]),
        lambda f: ("GET", f"/users/{f['user_id']}", None, True),
    ),
    (
        "auth.verify",
        "auth",
        lambda d, f: d.auth.verify(f["token"]),
        lambda f: ("POST", "/verify", {"token": f["token"]}, True),
    ),
    (
        "posts.get_post",
        "posts",
        lambda d, f: d.posts.get_post(f["post_id"]),
        lambda f: ("GET", f"/posts/{f['post_id']}", None, True),
    ),
    (
        "posts.get_post_with_comments",
        "posts",
        lambda d, f: d.posts.get_post_with_comments(f["post_id"]),
        lambda f: ("GET", f"/posts/{f['post_id']}/with-comments", None, True),
    ),
    (
        "posts.list_comments",
        "posts",
        lambda d, f: d.posts.list_comments(f["post_id"]),
        lambda f: ("GET", f"/comments?post={f['post_id']}", None, True),
    ),
    (
        "images.get",
        "images",
        lambda d, f: d.images.get(f["image_key"]),
        lambda f: ("GET", f"/images/{f['image_key']}", None, False),
    ),
    (
        "payments.get_payment",
        "payments",
        lambda d, f: d.payments.get_payment(f["payment_id"]),
        lambda f: ("GET", f"/payments/{f['payment_id']}", None, True),
    ),
]


def available(name: str, domains: Domains) -> bool:
    """Whether the interface still has the call ``name`` (``domain.method``)."""
    domain, _, method = name.partition(".")
    return callable(getattr(getattr(domains, domain), method, None))
