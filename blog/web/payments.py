"""Payments: charged once per Idempotency-Key, however often the client retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from flask import Blueprint, Response, jsonify, request
from msgspec import Meta

from blog.errors import InvalidInput, storable_id
from blog.payments import IDEMPOTENCY_KEY_HEADER, Payment, PaymentNotFound
from blog.web.auth_guard import current_user, login_required
from blog.web.context import domains
from blog.web.inputs import field, json_body
from blog.web.openapi import Parameter, documented

bp = Blueprint("payments", __name__)


@dataclass(frozen=True)
class Charge:
    amount: Annotated[
        int, Meta(ge=50, le=99_999_999, description="In minor units (cents).", examples=[500])
    ]
    currency: Annotated[
        str, Meta(pattern="^[A-Za-z]{3}$", description="ISO 4217, any case.", examples=["usd"])
    ]
    payment_method: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=255,
            description="A payment method the provider knows; unknown ones answer 400.",
            examples=["pm_card_visa"],
        ),
    ]


IDEMPOTENCY_KEY = Parameter(
    "Any unique string (e.g. a UUID): a retry with the same key replays the first outcome "
    "instead of charging again.",
    {"type": "string", "minLength": 1},
    required=True,
)


@bp.post("/payment")
@login_required
@documented(
    "Charge the caller, once per Idempotency-Key",
    body=Charge,
    headers={IDEMPOTENCY_KEY_HEADER: IDEMPOTENCY_KEY},
    response=Payment,
    status=201,
    errors=(402, 409, 502, 503),
)
def pay() -> tuple[Response, int]:
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER, "").strip()
    if not key:
        raise InvalidInput(
            "the Idempotency-Key header is required (any unique string, e.g. a UUID; "
            "send the same one again to retry safely)",
            details={"field": "Idempotency-Key"},
        )
    body = json_body()
    payment = domains().payments.charge(
        user_id=current_user().id,
        amount=field(body, "amount", int),
        currency=field(body, "currency", str),
        payment_method=field(body, "payment_method", str),
        idempotency_key=key,
    )
    return jsonify(payment), 201


@bp.get("/payments/<int:payment_id>")
@login_required
@documented("One of the caller's payments", response=Payment, errors=(400, 503))
def get_payment(payment_id: int) -> Response:
    if payment_id < 1 or not storable_id(payment_id):
        # Checked at the edge, answered as the payments domain answers any id that names no
        # payment (see blog.web.inputs.path_id for why here).
        raise PaymentNotFound(f"payment {payment_id} not found")
    payment = domains().payments.get_payment(payment_id)
    if payment.user_id != current_user().id:
        # Not 403: whether someone else's payment exists is not the caller's business.
        raise PaymentNotFound(f"payment {payment_id} not found")
    return jsonify(payment)
