"""Payments: charged once per Idempotency-Key, however often the client retries."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify, request

from blog.errors import InvalidInput
from blog.payments import PaymentNotFound
from blog.web.auth_guard import current_user, login_required
from blog.web.context import domains
from blog.web.inputs import field, json_body

bp = Blueprint("payments", __name__)


@bp.post("/payment")
@login_required
def pay() -> tuple[Response, int]:
    key = request.headers.get("Idempotency-Key", "").strip()
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
    return jsonify(asdict(payment)), 201


@bp.get("/payments/<int:payment_id>")
@login_required
def get_payment(payment_id: int) -> Response:
    payment = domains().payments.get_payment(payment_id)
    if payment.user_id != current_user().id:
        # Not 403: whether someone else's payment exists is not the caller's business.
        raise PaymentNotFound(f"payment {payment_id} not found")
    return jsonify(asdict(payment))
