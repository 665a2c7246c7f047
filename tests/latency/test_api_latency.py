"""What each public API call costs, in the topology under test (``make bench``).

Every scenario goes through the public API (the gateway, its auth at the edge, its aggregation)
and reaches the domains in whatever mode the topology puts them: in-process, or a real HTTP hop
to the extracted service. Writes use fresh data each round (emails, idempotency keys), so every
round does the full work and none is answered from a replay.

Register and login run at the configured bcrypt cost (12 by default, about 0.3 s a hash on this
kind of machine): their latency is bcrypt's, and an extraction moves it, it does not change it.
The matrix report measures bcrypt alone next to them to show that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # fixtures' types; the fixtures themselves come from conftest
    from tests.latency.conftest import LabClient, Member

Measure = Callable[..., None]

CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
PASSWORD = "correct horse battery"


def test_register(measure: Measure, api: LabClient, unique: Callable[[str], str]) -> None:
    measure(
        lambda: api.request(
            "POST",
            "/api/register",
            201,
            json={
                "email": unique("reg") + "@example.com",
                "name": "New Reader",
                "password": PASSWORD,
            },
        ),
        warmup=1,
    )


def test_login(measure: Measure, api: LabClient, member: Member) -> None:
    measure(
        lambda: api.request(
            "POST", "/api/login", 200, json={"email": member.email, "password": member.password}
        ),
        warmup=1,
    )


def test_token_verify(measure: Measure, api: LabClient, member: Member) -> None:
    """GET /api/me: the gateway verifies the bearer token (auth.verify) and answers."""
    measure(lambda: api.request("GET", "/api/me", 200, headers=member.headers))


def test_create_post(measure: Measure, api: LabClient, member: Member) -> None:
    measure(
        lambda: api.request(
            "POST",
            "/api/posts",
            201,
            headers=member.headers,
            json={"title": "A benchmark post", "body": "Lorem ipsum dolor sit amet. " * 20},
        )
    )


def test_list_posts(measure: Measure, api: LabClient, seeded: dict[str, int]) -> None:
    measure(lambda: api.request("GET", "/api/posts", 200))


def test_post_detail(measure: Measure, api: LabClient, seeded: dict[str, int]) -> None:
    """The aggregation: post + comments (posts, concurrent when remote) + author (auth)."""
    path = f"/api/posts/{seeded['detail']}"
    measure(lambda: api.request("GET", path, 200))


def test_comment(measure: Measure, api: LabClient, member: Member, seeded: dict[str, int]) -> None:
    path = f"/api/posts/{seeded['commented']}/comments"
    measure(
        lambda: api.request(
            "POST", path, 201, headers=member.headers, json={"body": "Nice post, thanks."}
        )
    )


def test_upload_1mp_jpeg(
    measure: Measure, api: LabClient, member: Member, upload_body: tuple[bytes, str]
) -> None:
    body, content_type = upload_body
    measure(
        lambda: api.request(
            "POST",
            "/api/upload",
            201,
            headers=member.headers,
            data=body,
            content_type=content_type,
        )
    )


def test_payment(
    measure: Measure, api: LabClient, member: Member, unique: Callable[[str], str]
) -> None:
    measure(
        lambda: api.request(
            "POST",
            "/api/payment",
            201,
            json=CARD,
            headers={**member.headers, "Idempotency-Key": unique("pay")},
        )
    )
